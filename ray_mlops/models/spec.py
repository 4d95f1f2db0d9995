"""The JSON spec that rebuilds a network anywhere: in training workers, evaluation, serving."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Head = Literal["binary", "multiclass", "regression"]
ModelKind = Literal["mlp", "linear", "custom"]


def head_for(task: str, n_labels: int | None) -> Head:
    """The output head of a task: one logit for two classes, one per class above, one value."""
    if task == "regression":
        return "regression"
    return "binary" if n_labels == 2 else "multiclass"


def outputs_for(head: Head, n_labels: int | None) -> int:
    """Width of the network's last layer for ``head``."""
    return int(n_labels or 0) if head == "multiclass" else 1


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network before loading its weights.

    A custom network travels as the source of its builder's module, so a packaged model
    needs no file from the machine it was trained on.

    Example:
        >>> spec = ModelSpec(n_inputs=4, n_outputs=1, head="binary", hidden_sizes=[8])
        >>> ModelSpec.from_json(spec.to_json()) == spec
        True
    """

    n_inputs: int
    n_outputs: int
    head: Head = "multiclass"
    kind: ModelKind = "mlp"
    hidden_sizes: list[int] = field(default_factory=list)
    dropout: float = 0.0
    normalization: Literal["none", "batch", "layer"] = "none"
    builder: str | None = None
    builder_source: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise to JSON."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Read a document written by :meth:`to_json`."""
        return cls(**json.loads(text))
