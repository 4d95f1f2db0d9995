"""Lazy package exports: a package lists its public names, each imported on first use.

A package's ``__init__`` names its public surface without importing it: ``import
ray_mlops.models.predictor`` inside a packaged model, or the CLI's ``--help``, must not pay
for Ray, Torch or MLflow because a sibling module of the package needs them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``homes`` maps each exported name to the
    submodule that defines it (relative to ``package``), imported when the name is first used.

    Example:
        >>> getattr_ = lazy_exports("ray_mlops.reports", {"esc": "html"})
        >>> getattr_("esc")("<b>")
        '&lt;b&gt;'
    """

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{home}"), name)

    return __getattr__
