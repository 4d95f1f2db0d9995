"""Data-parallel training with Ray Train's TorchTrainer, and the loop search trials share.

``train_model`` trains one pipeline; ``build_torch_trainer`` is the one place a
``TorchTrainer`` is configured (training and multi-worker search trials); ``run_loop`` and the
sessions are the epoch loop either runs in. Imported lazily: none loads Ray or Torch until used.
"""

from ray_mlops.exports import lazy_exports

__all__ = [
    "FEATURES",
    "LABEL",
    "RESIDENT",
    "LoopSettings",
    "RayTrainSession",
    "ResidentShard",
    "TrainingOutcome",
    "TrainingSummary",
    "TuneTrialSession",
    "build_torch_trainer",
    "encode_split",
    "is_finite_number",
    "read_weights",
    "run_loop",
    "to_model_batch",
    "train_encoded",
    "train_model",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "FEATURES": "ingest",
        "LABEL": "ingest",
        "RESIDENT": "loop",
        "LoopSettings": "loop",
        "RayTrainSession": "session",
        "ResidentShard": "ingest",
        "TrainingOutcome": "trainer",
        "TrainingSummary": "trainer",
        "TuneTrialSession": "session",
        "build_torch_trainer": "trainer",
        "encode_split": "encode",
        "is_finite_number": "trainer",
        "read_weights": "checkpoint",
        "run_loop": "loop",
        "to_model_batch": "encode",
        "train_encoded": "trainer",
        "train_model": "trainer",
    },
)
