"""Every private Ray API that ray_mlops.compat relies on, checked against the installed Ray.

A failure names the API and the compat module to update: read it before upgrading Ray.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import optuna
import pyarrow as pa
import pytest
import ray

import ray_mlops
from ray_mlops.compat import ray_core, ray_data, ray_serve, ray_tune

# (module, attribute path inside it, the compat module that uses it)
PRIVATE_APIS = [
    ("ray._private.worker", "_global_node", ray_core),
    ("ray._private.node", "Node.get_logs_dir_path", ray_core),
    ("ray.data.block", "BlockAccessor._aggregate", ray_data),
    ("ray.data._internal.arrow_block", "ArrowBlockAccessor._combine_aggregated_blocks", ray_data),
    ("ray.data._internal.planner.exchange.sort_task_spec", "SortKey", ray_data),
    ("ray.data.aggregate", "Quantile._combine_column", ray_data),
    ("ray.serve._private.haproxy_templates", "HAPROXY_CONFIG_TEMPLATE", ray_serve),
    ("ray.serve._private.haproxy", "HAPROXY_CONFIG_TEMPLATE", ray_serve),
    ("ray.serve.context", "_get_global_client", ray_serve),
    ("ray.serve.context", "_disconnect", ray_serve),
    ("ray.serve._private.client", "ServeControllerClient.shutdown_cached_handles", ray_serve),
    ("ray.serve._private.controller", "ServeController.graceful_shutdown", ray_serve),
]


def _changed(api: str, compat: Any, why: str) -> str:
    return f"Ray {ray.__version__} changed {api} ({why}): update {compat.__name__}"


@pytest.mark.parametrize(
    ("module", "path", "compat"), PRIVATE_APIS, ids=[f"{m}.{p}" for m, p, _ in PRIVATE_APIS]
)
def test_each_private_api_still_exists(module: str, path: str, compat: Any) -> None:
    api = f"{module}.{path}"
    try:
        found: Any = importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(_changed(api, compat, f"module gone: {exc}"))
    for part in path.split("."):
        if not hasattr(found, part):
            pytest.fail(_changed(api, compat, f"no attribute {part!r}"))
        found = getattr(found, part)


def test_ray_init_takes_the_node_ip_address() -> None:
    # A private keyword of ray.init is taken from its **kwargs, which rejects unknown ones.
    source = inspect.getsource(inspect.unwrap(ray.init))
    for keyword in ray_core.local_node_options():
        assert f'kwargs.pop("{keyword}"' in source, _changed(
            f"ray.init({keyword}=...)", ray_core, "no longer read from its keywords"
        )


def test_a_deployment_takes_a_version_with_internal_options() -> None:
    from ray.serve.deployment import Deployment

    accepted = inspect.signature(Deployment.options).parameters
    for keyword in ("version", "_internal"):
        assert keyword in accepted, _changed(
            f"Deployment.options({keyword}=...)", ray_serve, "no keyword"
        )


def test_serve_client_keeps_the_controller_and_shutdown_flag_it_stops_with() -> None:
    from ray.serve._private.client import ServeControllerClient

    source = inspect.getsource(ServeControllerClient.__init__)
    for attribute in ("_controller", "_shutdown"):
        assert f"self.{attribute}" in source, _changed(
            f"ServeControllerClient.{attribute}", ray_serve, "not set in __init__"
        )


def test_serve_haproxy_template_has_the_lines_rewritten() -> None:
    from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

    try:
        patched = ray_serve.status_pages_on_host(HAPROXY_CONFIG_TEMPLATE)
    except ValueError as exc:
        pytest.fail(_changed("haproxy_templates.HAPROXY_CONFIG_TEMPLATE", ray_serve, str(exc)))
    assert "bind *:{{ config.stats_port }}" not in patched


def test_block_partials_combine_as_ray_aggregates() -> None:
    from ray.data.aggregate import Count, Max, Sum

    aggs = (Count(), Sum("x"), Max("x"))
    blocks = [pa.table({"x": [1, 2, 3]}), pa.table({"x": [4, 5]})]
    partials = [ray_data.aggregate_block(block, aggs) for block in blocks]
    assert all(p.num_rows == 1 for p in partials), _changed(
        "BlockAccessor._aggregate", ray_data, "not one row of accumulators per block"
    )
    rows = ray_data.combine_aggregated(partials, aggs).to_pylist()
    assert rows == [{"count()": 5, "sum(x)": 15, "max(x)": 5}], _changed(
        "ArrowBlockAccessor._combine_aggregated_blocks", ray_data, f"gave {rows}"
    )


def test_the_empty_safe_quantile_combines_no_values_and_values() -> None:
    quantile = ray_data.empty_safe_quantile()(on="x", q=0.5, alias_name="median")
    partials = [ray_data.aggregate_block(pa.table({"x": [1.0, 2.0, 9.0]}), (quantile,))]
    median = ray_data.combine_aggregated(partials, (quantile,)).to_pylist()
    assert median == [{"median": 2.0}], _changed("Quantile._combine_column", ray_data, str(median))
    nothing = quantile._combine_column(pa.chunked_array([pa.array([None], pa.null())]))
    assert nothing is None, _changed("Quantile._combine_column", ray_data, "not overridden")


def test_optuna_search_keeps_its_study_trials_and_told_set() -> None:
    from ray.tune.search.optuna import OptunaSearch

    def space(trial: optuna.Trial) -> None:
        trial.suggest_float("lr", 1e-3, 1.0, log=True)

    searcher = OptunaSearch(
        space=space, metric="loss", mode="min", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    searcher.suggest("t1")
    for attribute in ray_tune.OPTUNA_SEARCH_ATTRIBUTES:
        assert hasattr(searcher, attribute), _changed(
            f"OptunaSearch.{attribute}", ray_tune, "no such attribute"
        )
    searcher.on_trial_result("t1", {"loss": 0.5, "training_iteration": 1})
    assert not ray_tune.was_told(searcher, "t1")
    ray_tune.tell_pruned(searcher, "t1")
    assert ray_tune.was_told(searcher, "t1")
    study = ray_tune.optuna_study(searcher)
    assert study is not None
    number = ray_tune.optuna_trials(searcher)["t1"].number
    trial = study.get_trials(deepcopy=False)[number]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.intermediate_values == {1: 0.5}


PACKAGE = Path(ray_mlops.__file__).parent
PRIVATE_IMPORT = re.compile(r"\b(ray|optuna|mlflow)(\.\w+)*\._(private|internal)\b|_internal=True")
ENVIRON_WRITE = re.compile(r"os\.environ(\[[^]]+\]\s*=[^=]|\.(setdefault|update|pop)\()|putenv")


def _sources_outside(*homes: Path) -> dict[str, str]:
    return {
        str(path.relative_to(PACKAGE)): path.read_text()
        for path in PACKAGE.rglob("*.py")
        if not any(path.is_relative_to(home) for home in homes)
    }


def test_no_module_outside_compat_reaches_into_ray_internals() -> None:
    found = [
        name
        for name, source in _sources_outside(PACKAGE / "compat").items()
        if PRIVATE_IMPORT.search(source)
    ]
    assert not found, f"private Ray APIs used outside ray_mlops/compat: {found}"


def test_only_settings_env_writes_the_environment() -> None:
    found = [
        name
        for name, source in _sources_outside(PACKAGE / "settings_env.py").items()
        if ENVIRON_WRITE.search(source)
    ]
    assert not found, f"os.environ written outside ray_mlops/settings_env.py: {found}"
