"""The command line loads without the heavy stack, so `--help` and bad input answer at once."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "mlflow", "ray", "scipy", "pandas")


def _modules_after(code: str) -> set[str]:
    """Top-level packages imported by ``code`` in a fresh interpreter."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(done.stdout.split())


def test_loading_the_command_line_imports_none_of_the_heavy_stack() -> None:
    loaded = _modules_after("import ray_mlops.cli")
    assert "typer" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_preflight_checks_need_neither_ray_torch_nor_mlflow() -> None:
    loaded = _modules_after("import ray_mlops.preflight")
    assert not loaded & {"torch", "mlflow", "ray"}, sorted(loaded & {"torch", "mlflow", "ray"})
