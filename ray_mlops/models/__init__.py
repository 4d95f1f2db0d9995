"""Model builders, the Ray-free predictor used by evaluation and serving, pyfunc packaging.

``make_spec`` turns the config into a ``ModelSpec``, ``build_model`` the spec into a network,
``TabularPredictor`` scores frames with it, and ``save_pyfunc_model`` packages it for MLflow.
Imported lazily: a packaged model ships this package and loads only what it uses.
"""

from ray_mlops.exports import lazy_exports

__all__ = [
    "FEATURES_FILE",
    "PREDICTION_COLUMN",
    "PROBABILITY_PREFIX",
    "SPEC_FILE",
    "WEIGHTS_FILE",
    "ModelSpec",
    "TabularModel",
    "TabularPredictor",
    "build_model",
    "input_example",
    "loss_sum",
    "make_spec",
    "predicted_class",
    "probability_labels",
    "save_pyfunc_model",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "FEATURES_FILE": "predictor",
        "PREDICTION_COLUMN": "outputs",
        "PROBABILITY_PREFIX": "outputs",
        "SPEC_FILE": "predictor",
        "WEIGHTS_FILE": "predictor",
        "ModelSpec": "spec",
        "TabularModel": "pyfunc_model",
        "TabularPredictor": "predictor",
        "build_model": "factory",
        "input_example": "package",
        "loss_sum": "heads",
        "make_spec": "from_config",
        "predicted_class": "heads",
        "probability_labels": "outputs",
        "save_pyfunc_model": "package",
    },
)
