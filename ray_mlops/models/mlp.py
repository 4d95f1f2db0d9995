"""The built-in MLP and the JSON spec that rebuilds it anywhere."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network before loading its weights.

    Example:
        >>> spec = ModelSpec(n_inputs=4, n_outputs=2, hidden_sizes=[8], dropout=0.0)
        >>> build_mlp(spec)(__import__("torch").zeros(3, 4)).shape
        torch.Size([3, 2])
    """

    n_inputs: int
    n_outputs: int
    hidden_sizes: list[int]
    dropout: float

    def to_json(self) -> str:
        """Serialise to JSON."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Read a document written by :meth:`to_json`."""
        return cls(**json.loads(text))


def build_mlp(spec: ModelSpec) -> nn.Sequential:
    """Linear -> ReLU -> Dropout per hidden layer, then a linear head (logits or one value)."""
    layers: list[nn.Module] = []
    width = spec.n_inputs
    for hidden in spec.hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(spec.dropout)]
        width = hidden
    layers.append(nn.Linear(width, spec.n_outputs))
    return nn.Sequential(*layers)
