"""Evaluation on the test split: metrics, slices, fairness, importance, and the report.

``evaluate_holdout`` gives an ``EvaluationReport`` (JSON and HTML); the metric helpers are
what the gate, the registry catalog and the search rank by. Imported lazily.
"""

from ray_mlops.exports import lazy_exports

__all__ = [
    "EvaluationReport",
    "classification_metrics",
    "conform_to_signature",
    "default_primary_metric",
    "evaluate_holdout",
    "higher_is_better",
    "label_indices",
    "regression_metrics",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "EvaluationReport": "report",
        "classification_metrics": "metrics",
        "conform_to_signature": "holdout",
        "default_primary_metric": "metrics",
        "evaluate_holdout": "report",
        "higher_is_better": "metrics",
        "label_indices": "metrics",
        "regression_metrics": "metrics",
    },
)
