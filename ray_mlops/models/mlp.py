"""The built-in networks: an MLP of configurable depth, width, dropout and normalization,
and a linear baseline."""

from __future__ import annotations

from torch import nn

from ray_mlops.models.spec import ModelSpec


def build_mlp(spec: ModelSpec) -> nn.Sequential:
    """Linear -> [Norm] -> ReLU -> Dropout per hidden layer, then a linear head.

    Example:
        >>> spec = ModelSpec(n_inputs=4, n_outputs=2, hidden_sizes=[8], normalization="layer")
        >>> build_mlp(spec)(__import__("torch").zeros(3, 4)).shape
        torch.Size([3, 2])
    """
    layers: list[nn.Module] = []
    width = spec.n_inputs
    for hidden in spec.hidden_sizes:
        layers.append(nn.Linear(width, hidden))
        if spec.normalization == "batch":
            layers.append(nn.BatchNorm1d(hidden))
        elif spec.normalization == "layer":
            layers.append(nn.LayerNorm(hidden))
        layers += [nn.ReLU(), nn.Dropout(spec.dropout)]
        width = hidden
    layers.append(nn.Linear(width, spec.n_outputs))
    return nn.Sequential(*layers)


def build_linear(spec: ModelSpec) -> nn.Sequential:
    """One linear layer: logistic or linear regression on the encoded features."""
    return nn.Sequential(nn.Linear(spec.n_inputs, spec.n_outputs))
