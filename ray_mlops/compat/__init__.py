"""The one home of every private API of Ray and Optuna that this package uses.

Each is an upgrade risk: a Ray release may rename or reshape it without notice. Nothing
outside this package touches one; ``tests/unit/test_compat.py`` checks each against the
installed version and fails naming the API (and the module here to update) when an upgrade
changes it. Pinned: Ray 2.60.*; Optuna itself is used through its public API only.

:mod:`ray_mlops.compat.ray_core`
    ``ray.init(_node_ip_address=...)``: a Ray started here binds 127.0.0.1 (no public keyword).
    ``ray._private.worker._global_node.get_logs_dir_path()``: the node's log folder, which the
    benchmarks read workers' start-up times from.
:mod:`ray_mlops.compat.ray_data`
    ``BlockAccessor._aggregate``, ``ArrowBlockAccessor._combine_aggregated_blocks`` and
    ``SortKey`` (``ray.data._internal.planner.exchange.sort_task_spec``): the accumulate and
    combine steps of Ray's hash aggregation, run without its shuffle (3 to 5 s per call saved).
    ``Quantile._combine_column``: overridden so that an empty dataset's accumulator is "no values".
:mod:`ray_mlops.compat.ray_serve`
    ``ray.serve._private.haproxy_templates.HAPROXY_CONFIG_TEMPLATE`` (and its copy in
    ``ray.serve._private.haproxy``): rewritten so HAProxy's stats and metrics pages bind
    ``serve.host``, not every interface.
    ``ray.serve.context._get_global_client``, ``ServeControllerClient._controller`` and
    ``._shutdown``, ``context._disconnect``: Serve's shutdown without the controller's retries,
    which report every normal stop as a failed task.
    ``Deployment.options(version=..., _internal=True)``: a code version for ``serve.run``, so a
    redeploy of unchanged code keeps the running replicas.
:mod:`ray_mlops.compat.ray_tune`
    ``OptunaSearch._ot_study``, ``._ot_trials``, ``._completed_trials``: telling Optuna that a
    trial the scheduler stopped was PRUNED, not COMPLETE (Optuna's own API does the telling).

Ray Train's ``_CheckpointManager`` is not used (nor was it): the best checkpoint comes from the
public ``Result.best_checkpoints``. Outside Ray and Optuna, :mod:`ray_mlops.registry.reader`
reads MLflow's SQLite tables directly (``registered_models``, ``model_versions``,
``model_version_tags``, ``registered_model_aliases``) so that ``models list`` answers without
importing MLflow: those names are MLflow's private schema, and
``tests/unit/test_aliases_catalog.py::test_the_sqlite_reader_reads_what_mlflow_reads`` fails
when an MLflow upgrade changes what it reads.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["ray_core", "ray_data", "ray_serve", "ray_tune"]


def __getattr__(name: str) -> ModuleType:
    # Each module is imported on first use: none of them imports Ray until it is called.
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(f"{__name__}.{name}")
