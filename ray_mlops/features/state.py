"""The fitted state of the feature pipeline: plain JSON, never pickle.

Example:
    >>> state = FeatureState(
    ...     numeric={"age": NumericState(fill=40.0, center=40.0, scale=10.0, bucket_edges=[30.0])},
    ...     categorical={
    ...         "sex": CategoricalState(categories=["Female", "Male"]),
    ...         "city": CategoricalState(categories=[], encode="hashing", hash_buckets=2),
    ...     },
    ...     datetime={"signup": DatetimeState(parts=["month"], centers=[6.5], scales=[3.5])},
    ...     crosses=[CrossState(columns=["sex", "city"], buckets=2)],
    ...     labels=["<=50K", ">50K"],
    ... )
    >>> FeatureState.from_json(state.to_json()) == state
    True
    >>> state.output_columns  # doctest: +NORMALIZE_WHITESPACE
    ['age', 'age=bucket0', 'age=bucket1', 'sex=Female', 'sex=Male', 'sex=<other>',
     'sex=<missing>', 'city=#0', 'city=#1', 'signup.month', 'sex*city=#0', 'sex*city=#1']
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

STATE_FORMAT_VERSION = 2
# Version 1 (imputation, scaling and one-hot only) reads as version 2 with the defaults.
_READABLE_VERSIONS = (1, STATE_FORMAT_VERSION)
OTHER_SLOT = "<other>"
MISSING_SLOT = "<missing>"

CategoricalEncoding = Literal["onehot", "ordinal", "hashing"]


@dataclass(frozen=True)
class NumericState:
    """One numeric column: ``v = fillna(log1p?(x), fill)``, encoded as ``(v - center) / scale``.

    Args:
        fill: Value of missing entries (in log space when ``log1p``).
        center: Subtracted before scaling.
        scale: Divisor, never 0.
        log1p: Apply ``sign(x) * log1p(|x|)`` first.
        bucket_edges: Increasing cut points of ``v``; ``len + 1`` one-hot bucket slots follow the
            scaled value. ``None``: no buckets.
    """

    fill: float
    center: float
    scale: float
    log1p: bool = False
    bucket_edges: list[float] | None = None

    @property
    def width(self) -> int:
        """Slots in the feature vector."""
        return 1 if self.bucket_edges is None else len(self.bucket_edges) + 2


@dataclass(frozen=True)
class CategoricalState:
    """One categorical column.

    Args:
        categories: Kept values, most frequent first (onehot, ordinal); rarer and unseen values
            are ``<other>``. Empty for hashing.
        encode: ``onehot``, ``ordinal`` (code / (k + 1) with ``<other>`` = k and
            ``<missing>`` = k + 1) or ``hashing`` (one-hot of a stable hash).
        fill: Value of missing entries; ``None`` gives them their own ``<missing>`` slot.
        hash_buckets: Slots of the hashing encoding.
    """

    categories: list[str]
    encode: CategoricalEncoding = "onehot"
    fill: str | None = None
    hash_buckets: int = 32

    def slot_names(self) -> list[str]:
        """What each slot of this column holds."""
        if self.encode == "ordinal":
            return []
        if self.encode == "hashing":
            return [f"#{i}" for i in range(self.hash_buckets)]
        missing = [MISSING_SLOT] if self.fill is None else []
        return [*self.categories, OTHER_SLOT, *missing]


@dataclass(frozen=True)
class DatetimeState:
    """One datetime column: each part standardised as ``(part - center) / scale``."""

    parts: list[str]
    centers: list[float]
    scales: list[float]


@dataclass(frozen=True)
class CrossState:
    """Categorical columns whose joint value is hashed into ``buckets`` one-hot slots."""

    columns: list[str]
    buckets: int

    @property
    def name(self) -> str:
        """Prefix of the cross's slot names, e.g. ``region*plan``."""
        return "*".join(self.columns)


@dataclass(frozen=True)
class FeatureState:
    """Everything needed to turn raw rows into model inputs and outputs back into labels.

    Args:
        numeric: Per numeric column, its imputation, scaling and buckets.
        categorical: Per categorical column, its imputation and encoding.
        datetime: Per datetime column, its parts and their standardisation.
        crosses: Hashed interactions of categorical columns.
        labels: Class labels in model-output order (classification); ``None`` for regression.
        target_center: Mean of the regression target on the train split.
        target_scale: Standard deviation of the regression target on the train split.
    """

    numeric: dict[str, NumericState] = field(default_factory=dict)
    categorical: dict[str, CategoricalState] = field(default_factory=dict)
    datetime: dict[str, DatetimeState] = field(default_factory=dict)
    crosses: list[CrossState] = field(default_factory=list)
    labels: list[str] | None = None
    target_center: float = 0.0
    target_scale: float = 1.0

    @property
    def input_columns(self) -> list[str]:
        """Raw columns a request must carry, in model input order."""
        return [*self.numeric, *self.categorical, *self.datetime]

    @property
    def output_columns(self) -> list[str]:
        """Names of the encoded feature vector's slots."""
        names: list[str] = []
        for column, num in self.numeric.items():
            names.append(column)
            if num.bucket_edges is not None:
                names.extend(f"{column}=bucket{i}" for i in range(len(num.bucket_edges) + 1))
        for column, cat in self.categorical.items():
            slots = cat.slot_names()
            names.extend([f"{column}={slot}" for slot in slots] if slots else [column])
        for column, dt in self.datetime.items():
            names.extend(f"{column}.{part}" for part in dt.parts)
        for cross in self.crosses:
            names.extend(f"{cross.name}=#{i}" for i in range(cross.buckets))
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
        """Read a document written by :meth:`to_json` (or by format version 1)."""
        raw: dict[str, Any] = json.loads(text)
        version = raw.pop("format_version", None)
        if version not in _READABLE_VERSIONS:
            raise ValueError(
                f"feature state format {version!r} is not one of {list(_READABLE_VERSIONS)}"
            )
        return cls(
            numeric={k: NumericState(**v) for k, v in raw["numeric"].items()},
            categorical={k: CategoricalState(**v) for k, v in raw["categorical"].items()},
            datetime={k: DatetimeState(**v) for k, v in raw.get("datetime", {}).items()},
            crosses=[CrossState(**c) for c in raw.get("crosses", [])],
            labels=raw["labels"],
            target_center=raw["target_center"],
            target_scale=raw["target_scale"],
        )
