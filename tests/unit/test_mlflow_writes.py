"""Every write to MLflow goes through ``tracking.py`` (runs) or ``registry/`` (versions, aliases).

A cheap guard, Ray-free and MLflow-free: it reads the package's source, so a direct
``client.log_text`` or ``set_tag`` added anywhere else fails here, naming file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ray_mlops

PACKAGE = Path(ray_mlops.__file__).parent
# The run handle, and the registry access (versions, aliases, version tags).
ALLOWED = ("tracking.py", "registry/")
# MlflowClient's and the fluent API's writes, by name.
WRITES = frozenset(
    {
        "create_experiment",
        "create_model_version",
        "create_registered_model",
        "create_run",
        "delete_run",
        "delete_tag",
        "end_run",
        "log_artifact",
        "log_artifacts",
        "log_batch",
        "log_dict",
        "log_figure",
        "log_image",
        "log_inputs",
        "log_metric",
        "log_metrics",
        "log_model",
        "log_param",
        "log_params",
        "log_table",
        "log_text",
        "restore_run",
        "set_experiment_tag",
        "set_model_version_tag",
        "set_registered_model_alias",
        "set_registered_model_tag",
        "set_tag",
        "set_tags",
        "set_terminated",
        "start_run",
        "update_run",
    }
)


def mlflow_writes(source: str) -> list[tuple[int, str]]:
    """(line, call) of each MLflow write call in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        func = node.func if isinstance(node, ast.Call) else None
        if isinstance(func, ast.Attribute) and func.attr in WRITES:
            found.append((node.lineno, ast.unparse(func)))
    return found


def test_no_mlflow_write_outside_tracking_and_the_registry() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(ALLOWED):
            continue
        offenders += [
            f"{relative}:{line}: {call}" for line, call in mlflow_writes(path.read_text())
        ]
    assert offenders == [], "write through tracking.RunHandle instead:\n" + "\n".join(offenders)


def test_the_guard_catches_a_direct_write() -> None:
    source = "client.log_text(run_id, text, 'a.txt')\nRunHandle(c, r).record_text(text, 'a.txt')\n"
    assert mlflow_writes(source) == [(1, "client.log_text")]


def test_the_tag_names_import_nothing_and_tracking_stays_below_data() -> None:
    names = ast.parse((PACKAGE / "mlflow_names.py").read_text())
    imported = [n for n in ast.walk(names) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [ast.unparse(n) for n in imported] == ["from __future__ import annotations"]
    tracking = ast.parse((PACKAGE / "tracking.py").read_text())
    modules = {n.module or "" for n in ast.walk(tracking) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tracking) if isinstance(n, ast.Import) for a in n.names
    }
    assert not {m for m in modules if m.startswith("ray_mlops.data")}, modules
