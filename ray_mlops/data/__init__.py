"""Data stages: read, check, split and fingerprint with Ray Data, profile and report.

``prepare_data`` is the data stage the pipeline runs; the rest are its parts, public for the
pipeline, the features and the benchmarks. Imported lazily: none of them loads Ray until used.
"""

from ray_mlops.exports import lazy_exports

__all__ = [
    "DatasetProfile",
    "PreparedData",
    "SchemaChange",
    "SplitPlan",
    "aggregate_blocks",
    "aggregate_table",
    "compare_schemas",
    "prepare_data",
    "profile_dataset",
    "render_profile_html",
    "resolve_source",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "DatasetProfile": "profile",
        "PreparedData": "stage",
        "SchemaChange": "contract",
        "SplitPlan": "split",
        "aggregate_blocks": "aggregate",
        "aggregate_table": "aggregate",
        "compare_schemas": "contract",
        "prepare_data": "stage",
        "profile_dataset": "profile",
        "render_profile_html": "report",
        "resolve_source": "source",
    },
)
