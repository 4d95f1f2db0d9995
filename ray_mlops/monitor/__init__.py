"""Monitoring: drift and live quality of a served model, from its captured traffic.

The statistics of one monitored window against the model's reference: per-column drift tests
and distances with a false-discovery control across columns (:mod:`.drift`), and the
performance estimated from predicted probabilities before labels arrive, beside the realised
performance once they do (:mod:`.estimate`). Imported lazily.
"""

from ray_mlops.exports import lazy_exports

__all__ = [
    "Calibrator",
    "ColumnDrift",
    "EstimatedPerformance",
    "RealisedPerformance",
    "categorical_drift",
    "decide",
    "drift_share",
    "estimate_by_group",
    "estimate_performance",
    "fit_calibrator",
    "numeric_drift",
    "population_stability_index",
    "prediction_class_drift",
    "prediction_score_drift",
    "profile_reference",
    "realised_performance",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "Calibrator": "estimate",
        "ColumnDrift": "drift",
        "EstimatedPerformance": "estimate",
        "RealisedPerformance": "estimate",
        "categorical_drift": "drift",
        "decide": "drift",
        "drift_share": "drift",
        "estimate_by_group": "estimate",
        "estimate_performance": "estimate",
        "fit_calibrator": "estimate",
        "numeric_drift": "drift",
        "population_stability_index": "drift",
        "prediction_class_drift": "drift",
        "prediction_score_drift": "drift",
        "profile_reference": "drift",
        "realised_performance": "estimate",
    },
)
