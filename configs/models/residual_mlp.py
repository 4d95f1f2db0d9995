"""An example user model for ray-mlops: a residual MLP with layer normalization.

A builder is any function ``build(n_inputs, n_outputs, **options) -> torch.nn.Module`` whose
module maps a float32 batch ``(batch, n_inputs)`` of encoded features to
``(batch, n_outputs)``: logits for classification, one value for regression. ray-mlops
chooses the head and loss; the builder only shapes the network. ``options`` come from
``model.options`` in the config. Everything the module needs must be imported inside this
file (torch and the standard library are always there): its source travels with the model,
to the training workers and into the packaged MLflow model.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """x + Dropout(Linear(GELU(Linear(LayerNorm(x)))))."""

    def __init__(self, width: int, expansion: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, width * expansion),
            nn.GELU(),
            nn.Linear(width * expansion, width),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def build(
    n_inputs: int,
    n_outputs: int,
    width: int = 64,
    blocks: int = 2,
    expansion: int = 2,
    dropout: float = 0.1,
) -> nn.Module:
    """Project the features to ``width``, apply ``blocks`` residual blocks, then the head."""
    return nn.Sequential(
        nn.Linear(n_inputs, width),
        *(ResidualBlock(width, expansion, dropout) for _ in range(blocks)),
        nn.LayerNorm(width),
        nn.Linear(width, n_outputs),
    )
