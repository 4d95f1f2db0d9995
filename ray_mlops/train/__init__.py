"""Data-parallel training with Ray Train's TorchTrainer."""
