"""Hyperparameter and architecture search: Ray Tune trials of the training loop, Optuna, ASHA.

The names below are what the pipeline and users call; the modules behind them are:

- :mod:`~ray_mlops.search.automl` and :mod:`~ray_mlops.search.space`: the YAML search space
  and how Optuna samples it.
- :mod:`~ray_mlops.search.stage`: the pipeline's search stage (inputs, the best model, its
  MLflow record); :mod:`~ray_mlops.search.tuner`: the ``Tuner`` run and the leaderboard.
- :mod:`~ray_mlops.search.trial`: one trial; :mod:`~ray_mlops.search.searcher`,
  :mod:`~ray_mlops.search.pruning`, :mod:`~ray_mlops.search.checkpoints` and
  :mod:`~ray_mlops.search.trial_runs`: how trials end, which checkpoints stay, MLflow runs.

They are imported lazily: importing one module of the package (the space, say) does not
import Ray Tune.

Example:
    >>> from ray_mlops import search
    >>> search.run_search.__module__
    'ray_mlops.search.tuner'
"""

from ray_mlops.exports import lazy_exports

__all__ = [
    "SearchInputs",
    "SearchOutcome",
    "best_model",
    "build_leaderboard",
    "record_search",
    "run_search",
    "search_inputs",
    "search_metric",
    "search_space",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "SearchInputs": "trial",
        "SearchOutcome": "tuner",
        "best_model": "stage",
        "build_leaderboard": "tuner",
        "record_search": "stage",
        "run_search": "tuner",
        "search_inputs": "stage",
        "search_metric": "tuner",
        "search_space": "automl",
    },
)
