"""The fitted state of the feature pipeline: plain JSON, never pickle.

Example:
    >>> state = FeatureState(
    ...     numeric={"age": NumericState(fill=40.0, center=40.0, scale=10.0)},
    ...     categorical={"sex": CategoricalState(categories=["Female", "Male"])},
    ...     labels=["<=50K", ">50K"],
    ... )
    >>> FeatureState.from_json(state.to_json()) == state
    True
    >>> state.output_columns
    ['age', 'sex=Female', 'sex=Male', 'sex=<other>', 'sex=<missing>']
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

STATE_FORMAT_VERSION = 1
OTHER_SLOT = "<other>"
MISSING_SLOT = "<missing>"


@dataclass(frozen=True)
class NumericState:
    """How one numeric column is imputed and scaled: ``(fillna(x, fill) - center) / scale``."""

    fill: float
    center: float
    scale: float


@dataclass(frozen=True)
class CategoricalState:
    """The kept categories of one column; rarer or unseen values go to ``<other>``."""

    categories: list[str]


@dataclass(frozen=True)
class FeatureState:
    """Everything needed to turn raw rows into model inputs and outputs back into labels.

    Args:
        numeric: Per numeric column, its imputation and scaling.
        categorical: Per categorical column, its kept categories.
        labels: Class labels in model-output order (classification); ``None`` for regression.
        target_center: Mean of the regression target on the train split.
        target_scale: Standard deviation of the regression target on the train split.
    """

    numeric: dict[str, NumericState] = field(default_factory=dict)
    categorical: dict[str, CategoricalState] = field(default_factory=dict)
    labels: list[str] | None = None
    target_center: float = 0.0
    target_scale: float = 1.0

    @property
    def input_columns(self) -> list[str]:
        """Raw columns a request must carry, in model input order."""
        return [*self.numeric, *self.categorical]

    @property
    def output_columns(self) -> list[str]:
        """Names of the encoded feature vector's slots."""
        names = list(self.numeric)
        for column, cat in self.categorical.items():
            slots = [*cat.categories, OTHER_SLOT, MISSING_SLOT]
            names.extend(f"{column}={slot}" for slot in slots)
        return names

    @property
    def n_features(self) -> int:
        """Width of the encoded feature vector."""
        return len(self.output_columns)

    def to_json(self) -> str:
        """Serialise to a JSON document."""
        return json.dumps({"format_version": STATE_FORMAT_VERSION, **asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> FeatureState:
        """Read a document written by :meth:`to_json`."""
        raw: dict[str, Any] = json.loads(text)
        version = raw.pop("format_version", None)
        if version != STATE_FORMAT_VERSION:
            raise ValueError(f"feature state format {version!r} is not {STATE_FORMAT_VERSION}")
        return cls(
            numeric={k: NumericState(**v) for k, v in raw["numeric"].items()},
            categorical={k: CategoricalState(**v) for k, v in raw["categorical"].items()},
            labels=raw["labels"],
            target_center=raw["target_center"],
            target_scale=raw["target_scale"],
        )
