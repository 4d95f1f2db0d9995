"""The command line loads without the heavy stack, so `--help` and bad input answer at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

HEAVY = ("torch", "mlflow", "ray", "scipy", "pandas")


def _modules_after(code: str) -> set[str]:
    """Top-level packages imported by ``code`` in a fresh interpreter."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{code}\nimport sys\n"
            "print('MODULES', *sorted({m.split('.')[0] for m in sys.modules}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    listed = next(line for line in done.stdout.splitlines() if line.startswith("MODULES"))
    return set(listed.split()[1:])


def test_loading_the_command_line_imports_none_of_the_heavy_stack() -> None:
    loaded = _modules_after("import ray_mlops.cli")
    assert "typer" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_preflight_checks_need_neither_ray_torch_nor_mlflow() -> None:
    loaded = _modules_after("import ray_mlops.preflight")
    assert not loaded & {"torch", "mlflow", "ray"}, sorted(loaded & {"torch", "mlflow", "ray"})


def test_listing_and_showing_a_sqlite_registry_imports_neither_mlflow_nor_sqlalchemy(
    tmp_path: Path,
) -> None:
    """``models list`` and ``models show`` took 3.5 to 19 s, nearly all of it importing MLflow."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_registered_model("adult")
    client.create_model_version("adult", "file:///nowhere/model", tags={"test_roc_auc": "0.9"})
    client.set_registered_model_alias("adult", "champion", "1")
    for command in (["list"], ["show", "adult"], ["show", "adult", "1"]):
        args = ["models", *command, "--tracking-uri", uri]
        code = f"from ray_mlops.cli import app\napp({args!r}, standalone_mode=False)"
        loaded = _modules_after(code)
        assert not loaded & {"mlflow", "sqlalchemy", "alembic"}, (command, loaded)
