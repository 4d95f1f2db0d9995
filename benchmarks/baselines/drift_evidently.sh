#!/usr/bin/env bash
# Installs the virtualenv of the drift baseline of monitor_drift.py (drift_evidently.py):
# Evidently pinned from PyPI, with pyarrow to read Parquet, in a virtualenv of its own
# (default /tmp/evidently-venv), created on first use. Evidently never enters the project's
# pyproject or .venv: it is a benchmark baseline, not a dependency. Its pins allow pandas 3,
# which breaks its import (``infer_dtype_from_object`` left pandas.core.dtypes.common), so
# pandas 2.3.3 is pinned beside it, as its users do.
#
# Usage: drift_evidently.sh [--install]    prints the virtualenv's python
# Environment: EVIDENTLY_VENV (default /tmp/evidently-venv).
set -euo pipefail

EVIDENTLY_VERSION=0.7.23
PYARROW_VERSION=21.0.0
PANDAS_VERSION=2.3.3
VENV=${EVIDENTLY_VENV:-/tmp/evidently-venv}

installed() {
  [ -x "$VENV/bin/python" ] &&
    [ "$("$VENV/bin/python" -c 'import evidently; print(evidently.__version__)' 2>/dev/null)" = "$EVIDENTLY_VERSION" ]
}

if ! installed; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "evidently==$EVIDENTLY_VERSION" "pyarrow==$PYARROW_VERSION" "pandas==$PANDAS_VERSION" >&2
fi
echo "$VENV/bin/python"
