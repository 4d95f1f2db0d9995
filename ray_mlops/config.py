"""The pipeline config: pydantic models of the YAML file, and the one home of defaults.

Every option carries its default and its explanation here; a bad config fails in
:func:`load_config` with the key path, the value given and what is allowed, never deep
inside a stage.

Example:
    >>> cfg = PipelineConfig.model_validate(
    ...     {"name": "demo", "data": {"path": "x.csv", "target": "y", "numeric": ["a"]}}
    ... )
    >>> cfg.train.num_workers
    2
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from ray_mlops.errors import ConfigError

Task = Literal["classification", "regression"]


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Section):
    strategy: Literal["hash", "stratified", "time"] = Field(
        "hash",
        description=(
            "hash: by a hash of the id (or row); a row keeps its split when rows are added. "
            "stratified: the same hash, with per-class cut points so each class has the exact "
            "shares. time: the latest rows by data.timestamp_column are the test split, the "
            "ones before them validation."
        ),
    )
    validation: float = Field(
        0.15, gt=0, lt=0.5, description="Share of rows in the validation split."
    )
    test: float = Field(
        0.15,
        gt=0,
        lt=0.5,
        description="Share of rows in the test split: the frozen holdout the champion is judged on.",
    )
    seed: int = Field(
        0,
        ge=0,
        description="Salt of the split hash. Rows keep their split across runs while it is unchanged.",
    )


ColumnRole = Literal["feature", "target", "id", "group", "sensitive", "timestamp"]
ColumnDtype = Literal["int", "float", "string", "bool", "timestamp"]


class ColumnContract(_Section):
    """What one column must hold. Rows that break it go to quarantine with the reason."""

    role: ColumnRole = Field("feature", description="What the column is for.")
    dtype: ColumnDtype = Field(
        description="Logical type; values that do not parse are quarantined."
    )
    nullable: bool = Field(True, description="Whether a missing value is allowed.")
    min: float | None = Field(None, description="Smallest allowed value (numeric columns).")
    max: float | None = Field(None, description="Largest allowed value (numeric columns).")
    categories: list[str] | None = Field(
        None, description="Allowed values (string columns); anything else is quarantined."
    )

    @model_validator(mode="after")
    def _bounds_fit_the_type(self) -> ColumnContract:
        numeric = self.dtype in ("int", "float")
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"min/max apply to int or float columns, not {self.dtype}")
        if self.categories is not None and self.dtype != "string":
            raise ValueError(f"categories apply to string columns, not {self.dtype}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class QuarantineConfig(_Section):
    max_bad_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="The run fails when more than this share of rows is quarantined.",
    )
    duplicate_ids: bool = Field(
        True, description="Quarantine every row whose id appears more than once."
    )
    conflicting_labels: bool | None = Field(
        None,
        description=(
            "Quarantine rows whose features are identical but whose labels differ. Default "
            "(null): on for classification, off for regression, where equal features with "
            "different values are normal for a continuous target."
        ),
    )

    def checks_conflicting_labels(self, task: Task) -> bool:
        """Whether the conflicting-labels check runs for ``task`` (see ``conflicting_labels``)."""
        if self.conflicting_labels is None:
            return task == "classification"
        return self.conflicting_labels


class DataConfig(_Section):
    path: str = Field(
        description=(
            "CSV (optionally .gz), Parquet or JSON-lines file, folder or glob; a local path "
            "(relative to the config file) or a URI such as s3://bucket/key."
        )
    )
    target: str = Field(description="Column to predict.")
    id_column: str | None = Field(
        None,
        description=(
            "Column that identifies a row: a row key, unique per row (a repeated id is "
            "quarantined as duplicate_id). The split hashes it; without one, the whole row."
        ),
    )
    group_column: str | None = Field(
        None,
        description=(
            "Column naming the entity a row belongs to when an entity has many rows (a person "
            "in panel data, a store, a patient): rows sharing it are not duplicates, and under "
            "split.strategy 'hash' all rows of a group land in one split (the split hashes the "
            "group), so the test split holds unseen entities."
        ),
    )
    numeric: list[str] = Field(default_factory=list, description="Numeric feature columns.")
    categorical: list[str] = Field(default_factory=list, description="Categorical feature columns.")
    datetime: list[str] = Field(
        default_factory=list,
        description="Date/time feature columns, encoded by their parts (features.datetime_parts).",
    )
    sensitive: list[str] = Field(
        default_factory=list,
        description="Columns describing people (sex, race, age...): recorded for fairness reports.",
    )
    timestamp_column: str | None = Field(
        None, description="When each row happened; needed by split.strategy 'time'."
    )
    contract: dict[str, ColumnContract] | None = Field(
        None,
        description=(
            "Declared data contract, enforced row by row. Without it, one is inferred from the "
            "data, saved as data_contract.yaml in MLflow (copy it here to enforce it), and used "
            "to report schema changes between runs."
        ),
    )
    quarantine: QuarantineConfig = Field(default_factory=QuarantineConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)

    @model_validator(mode="after")
    def _features_are_named_once(self) -> DataConfig:
        features = self.numeric + self.categorical + self.datetime
        if not features:
            raise ValueError("name at least one feature column under numeric or categorical")
        duplicated = sorted({c for c in features if features.count(c) > 1})
        if duplicated:
            raise ValueError(f"columns listed twice among the features: {duplicated}")
        if self.target in features:
            raise ValueError(f"the target {self.target!r} is also listed as a feature")
        if self.split.strategy == "time" and not self.timestamp_column:
            raise ValueError("split.strategy 'time' needs data.timestamp_column")
        if self.group_column is not None:
            if self.group_column == self.id_column:
                raise ValueError(
                    f"group_column and id_column are both {self.group_column!r}: a group has "
                    "many rows, an id one; drop id_column (or name the row key there)"
                )
            if self.split.strategy == "stratified":
                # Per-class cut points could send one group's rows of different labels to
                # different splits: the leak the group exists to prevent.
                raise ValueError(
                    "split.strategy 'stratified' cannot keep a group's rows together; use "
                    "'hash' (or 'time') with group_column"
                )
        return self

    @property
    def feature_columns(self) -> list[str]:
        """Feature columns in model input order: numeric, categorical, then datetime."""
        return [*self.numeric, *self.categorical, *self.datetime]

    @property
    def split_key(self) -> str | None:
        """The column the split hashes: the group (its rows stay together), else the id."""
        return self.group_column or self.id_column


DatetimePart = Literal["year", "month", "day", "dayofweek", "hour", "minute"]
_DEFAULT_DATETIME_PARTS: list[DatetimePart] = ["year", "month", "dayofweek", "hour"]


class NumericFeature(_Section):
    """How one numeric column is encoded: signed log1p, imputation, scaling, optional buckets."""

    impute: Literal["mean", "median", "most_frequent", "constant"] = Field(
        "median",
        description=(
            "Fill value for missing values, fitted on the train split (constant: fill_value). "
            "With log1p it is fitted in log space."
        ),
    )
    fill_value: float = Field(
        0.0,
        allow_inf_nan=False,
        description="Fill value of impute 'constant', in the column's own units.",
    )
    log1p: bool = Field(
        False,
        description=(
            "Replace x by sign(x) * log1p(|x|) before anything else, for skewed columns "
            "(amounts, counts): imputation, scaling and quantile buckets then happen in log space."
        ),
    )
    scale: Literal["standard", "minmax", "robust", "none"] = Field(
        "standard",
        description=(
            "standard: (x - mean) / std. minmax: (x - min) / (max - min). robust: "
            "(x - median) / IQR (75th minus 25th percentile). Fitted on the observed values of "
            "the train split; a constant column is only centred."
        ),
    )
    buckets: int | list[float] | None = Field(
        None,
        description=(
            "Also one-hot encode the (imputed) value's bucket, beside the scaled value. An "
            "integer n: n quantile buckets fitted on the train split (fewer where quantiles "
            "coincide). A list: explicit increasing cut points in the column's own units, "
            "len + 1 buckets; a value equal to a cut point goes to the bucket above it."
        ),
    )

    @model_validator(mode="after")
    def _buckets_are_usable(self) -> NumericFeature:
        if isinstance(self.buckets, int) and not 2 <= self.buckets <= 1000:
            raise ValueError(f"buckets: give 2 to 1000 quantile buckets, got {self.buckets}")
        if isinstance(self.buckets, list):
            edges = self.buckets
            if not edges or not all(abs(e) < float("inf") for e in edges):
                raise ValueError(f"buckets: give at least one finite cut point, got {edges}")
            if edges != sorted(set(edges)):
                raise ValueError(f"buckets: cut points must strictly increase, got {edges}")
        return self


class CategoricalFeature(_Section):
    """How one categorical column is encoded: imputation, then one-hot, ordinal or hashing."""

    impute: Literal["missing_slot", "most_frequent", "constant"] = Field(
        "missing_slot",
        description=(
            "missing_slot: missing values get their own slot (one-hot), code (ordinal) or "
            "hashed value '<missing>'. most_frequent: the train split's most frequent value. "
            "constant: fill_value."
        ),
    )
    fill_value: str = Field("missing", description="Fill value of impute 'constant'.")
    encode: Literal["onehot", "ordinal", "hashing"] = Field(
        "onehot",
        description=(
            "onehot: a slot per kept category plus '<other>' (and '<missing>'). ordinal: one "
            "slot holding the category's rank by frequency, scaled to [0, 1]. hashing: one-hot "
            "over hash_buckets slots of a stable hash of the value, for many categories."
        ),
    )
    max_categories: int = Field(
        50,
        ge=1,
        le=10_000,
        description=(
            "onehot/ordinal: the most frequent values kept; rarer and unseen ones share the "
            "'<other>' slot."
        ),
    )
    hash_buckets: int = Field(
        32, ge=2, le=2**20, description="hashing: number of slots values are hashed into."
    )


class FeaturesConfig(_Section):
    """Declarative feature transforms, fitted on the train split and stored as JSON."""

    numeric: NumericFeature = Field(
        default_factory=NumericFeature,
        description="Encoding of every column of data.numeric not named in numeric_columns.",
    )
    categorical: CategoricalFeature = Field(
        default_factory=CategoricalFeature,
        description=(
            "Encoding of every column of data.categorical not named in categorical_columns."
        ),
    )
    numeric_columns: dict[str, NumericFeature] = Field(
        default_factory=dict,
        description="Per-column encodings replacing `numeric` (the whole spec) for those columns.",
    )
    categorical_columns: dict[str, CategoricalFeature] = Field(
        default_factory=dict,
        description=(
            "Per-column encodings replacing `categorical` (the whole spec) for those columns."
        ),
    )
    datetime_parts: list[DatetimePart] = Field(
        default_factory=lambda: list(_DEFAULT_DATETIME_PARTS),
        min_length=1,
        description=(
            "Parts of each data.datetime column (ISO 8601, read as UTC) used as features, each "
            "standardised on the train split; a missing or unparseable time encodes as 0."
        ),
    )
    crosses: list[list[str]] = Field(
        default_factory=list,
        description=(
            "Interactions: each a list of 2 or more data.categorical columns whose joint value "
            "is hashed into cross_buckets one-hot slots."
        ),
    )
    cross_buckets: int = Field(
        64, ge=2, le=2**20, description="Slots of each cross's hash encoding."
    )

    @model_validator(mode="after")
    def _parts_and_crosses_are_well_formed(self) -> FeaturesConfig:
        if len(set(self.datetime_parts)) != len(self.datetime_parts):
            raise ValueError(f"datetime_parts lists a part twice: {self.datetime_parts}")
        for i, cross in enumerate(self.crosses):
            if len(set(cross)) < 2:
                raise ValueError(f"crosses.{i}: cross 2 or more distinct columns, got {cross}")
        return self

    def numeric_spec(self, column: str) -> NumericFeature:
        """The encoding of numeric ``column``: its override, else the default."""
        return self.numeric_columns.get(column, self.numeric)

    def categorical_spec(self, column: str) -> CategoricalFeature:
        """The encoding of categorical ``column``: its override, else the default."""
        return self.categorical_columns.get(column, self.categorical)


class ModelConfig(_Section):
    type: Literal["mlp", "linear", "custom"] = Field(
        "mlp",
        description=(
            "mlp: the built-in multilayer perceptron; linear: one linear layer (a baseline); "
            "custom: the network returned by `builder`."
        ),
    )
    hidden_sizes: list[int] = Field(
        default_factory=lambda: [64, 32],
        description="Widths of the MLP's hidden layers (their number is its depth).",
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer.")
    normalization: Literal["none", "batch", "layer"] = Field(
        "none", description="Normalization after each hidden linear layer of the MLP."
    )
    builder: str | None = Field(
        None,
        description=(
            "type custom: 'file.py:function' (relative to the config file) or "
            "'package.module:function'; called as function(n_inputs, n_outputs, **options) "
            "and returning a torch.nn.Module that maps (batch, n_inputs) to (batch, n_outputs)."
        ),
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to `builder`."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if any(width <= 0 for width in self.hidden_sizes):
            raise ValueError(f"hidden layer widths must be positive, got {self.hidden_sizes}")
        if self.type == "custom" and not self.builder:
            raise ValueError("type 'custom' needs a builder, e.g. 'models/net.py:build'")
        if self.builder and self.type != "custom":
            raise ValueError(f"builder is only used with type 'custom' (type is {self.type!r})")
        if self.builder and self.builder.count(":") != 1:
            raise ValueError(
                f"builder must look like 'file.py:function' or 'package.module:function', "
                f"got {self.builder!r}"
            )
        return self


# Validation metrics computed every epoch, and whether lower or higher is better.
SELECTION_METRICS: dict[str, dict[str, Literal["min", "max"]]] = {
    "classification": {"val_loss": "min", "val_accuracy": "max"},
    "regression": {"val_loss": "min", "val_rmse": "min", "val_mae": "min"},
}


class ScheduleConfig(_Section):
    name: Literal["constant", "cosine", "linear", "step"] = Field(
        "constant",
        description=(
            "Learning-rate schedule after warm-up: constant; cosine or linear decay to "
            "min_lr_ratio x learning_rate at the last step; step: x gamma every step_epochs."
        ),
    )
    warmup_epochs: float = Field(
        0.0, ge=0, description="Linear warm-up from ~0 to learning_rate over this many epochs."
    )
    min_lr_ratio: float = Field(
        0.0, ge=0, le=1, description="Final learning rate of cosine/linear, as a fraction."
    )
    step_epochs: int = Field(10, ge=1, description="Epochs between decays of 'step'.")
    gamma: float = Field(0.1, gt=0, le=1, description="Decay factor of 'step'.")


class EarlyStoppingConfig(_Section):
    patience: int | None = Field(
        None,
        ge=1,
        description=(
            "Stop after this many epochs without improvement of train.selection_metric. "
            "Default: off (train every epoch)."
        ),
    )
    min_delta: float = Field(
        0.0, ge=0, description="Smallest change of the metric that counts as improvement."
    )


class TrainConfig(_Section):
    num_workers: int = Field(2, ge=1, description="Data-parallel training workers (Ray actors).")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved by each worker.")
    use_gpu: bool = Field(False, description="Give each worker GPUs (see gpus_per_worker).")
    gpus_per_worker: float = Field(
        1.0, gt=0, description="GPUs per worker when use_gpu is set (fractions share a GPU)."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto: bf16 autocast on GPU, fp32 on CPU; fp32 or bf16 force one of them.",
    )
    epochs: int = Field(5, ge=1, le=10_000, description="Most passes over the train split.")
    batch_size: int = Field(256, ge=1, description="Rows per step on each worker.")
    optimizer: Literal["adamw", "adam", "sgd"] = Field(
        "adamw", description="Optimizer (fused kernels on GPU where torch has them)."
    )
    learning_rate: float = Field(1e-3, gt=0, le=10, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay.")
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum of 'sgd'.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    grad_clip_norm: float | None = Field(
        None, gt=0, description="Clip the gradient norm to this value. Default: no clipping."
    )
    selection_metric: str = Field(
        "val_loss",
        description=(
            "Validation metric that picks the best checkpoint and drives early stopping: "
            "val_loss or val_accuracy (classification); val_loss, val_rmse or val_mae "
            "(regression)."
        ),
    )
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    seed: int = Field(0, ge=0, description="Seed of weight initialisation, dropout and shuffling.")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK",
        description=(
            "How Ray places the workers: PACK on as few nodes as fit, SPREAD over as many "
            "nodes as it can (STRICT_*: refuse to start otherwise)."
        ),
    )
    max_failures: int = Field(
        2,
        ge=-1,
        description=(
            "Worker failures to recover from, each from the last checkpoint (-1: no limit)."
        ),
    )
    ingest: Literal["auto", "resident", "stream"] = Field(
        "auto",
        description=(
            "resident: each worker holds its shard as tensors on its device and shuffles by "
            "index (fastest, reproducible); stream: Ray Data iter_torch_batches with "
            "prefetching (any size); auto: resident when a shard fits resident_max_mib."
        ),
    )
    resident_max_mib: float = Field(
        2048.0, gt=0, description="Largest per-worker shard that auto keeps resident."
    )
    prefetch_batches: int = Field(
        4, ge=0, description="Batches Ray Data prepares ahead of the step (stream ingest)."
    )
    log_every_n_steps: int = Field(
        50,
        ge=0,
        description="Log train_loss_step and the learning rate every N steps (0: per epoch only).",
    )


class Dimension(_Section):
    """One dimension of a search space: exactly one of uniform, loguniform, int or choice.

    Example (YAML)::

        train.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}
        train.batch_size: {choice: [128, 256, 512]}
        model.type:
          choice: [mlp, linear]
          when:
            mlp:
              model.dropout: {uniform: [0.0, 0.5]}
    """

    uniform: tuple[float, float] | None = Field(None, description="[low, high] floats.")
    loguniform: tuple[float, float] | None = Field(
        None, description="[low, high] floats, sampled on a log scale (low > 0)."
    )
    integer: tuple[int, int] | None = Field(
        None, alias="int", description="[low, high] integers, both included."
    )
    step: float | None = Field(None, gt=0, description="Grid step of uniform or int.")
    log: bool = Field(False, description="Sample int on a log scale.")
    choice: list[Any] | None = Field(None, min_length=1, description="Values to choose from.")
    when: dict[str, dict[str, Dimension]] | None = Field(
        None,
        description="Sub-spaces by chosen value (choice only): sampled only with that value.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_kind(self) -> Dimension:
        kinds = [
            name
            for name, value in (
                ("uniform", self.uniform),
                ("loguniform", self.loguniform),
                ("int", self.integer),
                ("choice", self.choice),
            )
            if value is not None
        ]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of uniform, loguniform, int, choice"
                + (f" (got {', '.join(kinds)})" if kinds else "")
            )
        bounds = self.uniform or self.loguniform or self.integer
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"low must be below high (got {list(bounds)})")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs low > 0")
        if self.when is not None:
            if self.choice is None:
                raise ValueError("'when' belongs to a choice")
            names = {v if isinstance(v, str) else json.dumps(v) for v in self.choice}
            unknown = sorted(set(self.when) - names)
            if unknown:
                raise ValueError(f"'when' names values not among the choices: {unknown}")
        return self


SEARCH_SCHEDULERS = ("asha", "hyperband", "none")


class SearchConfig(_Section):
    """Hyperparameter search (``ray-mlops tune``; ``ray-mlops run`` when enabled)."""

    enabled: bool = Field(False, description="Run the search in 'ray-mlops run'.")
    mode: Literal["custom", "automl"] = Field(
        "custom",
        description=(
            "custom: search 'space'. automl: a ready space over model family, depth, width, "
            "regularisation, learning rate, batch size and feature encodings ('space' adds "
            "to or overrides it)."
        ),
    )
    space: dict[str, Dimension] = Field(
        default_factory=dict, description="Config path -> dimension (see Dimension)."
    )
    plugins: list[str] = Field(
        default_factory=list,
        description="automl: user model builders (file.py:function) added to the families.",
    )
    algorithm: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler.")
    startup_trials: int = Field(
        5, ge=1, description="TPE: random trials before the model of good regions kicks in."
    )
    num_samples: int | None = Field(
        20,
        ge=1,
        description=(
            "Most trials. null: as many as time_budget_s allows (the budget is then required)."
        ),
    )
    time_budget_s: float | None = Field(
        None, gt=0, description="Stop starting and running trials after this many seconds."
    )
    metric: str | None = Field(
        None, description="Metric to rank trials by. Default: train.selection_metric."
    )
    scheduler: Literal["asha", "hyperband", "none"] = Field(
        "asha", description="Early stopping of weak trials between epochs."
    )
    grace_period: int = Field(1, ge=1, description="Epochs every trial gets before pruning.")
    reduction_factor: int = Field(3, ge=2, description="ASHA/HyperBand: 1/N trials go on.")
    brackets: int = Field(
        1,
        ge=1,
        description=(
            "ASHA: brackets of successive halving; bracket k's first rung is grace_period x "
            "reduction_factor^k epochs. More than one hedges against configurations that start "
            "slowly but end best (low learning rates), for more trial-epochs."
        ),
    )
    trial_workers: int = Field(
        1,
        ge=1,
        description=(
            "Workers per trial. 1: the trial trains in its own process (no worker group to "
            "start). More: each trial runs a TorchTrainer with this many data-parallel workers."
        ),
    )
    trial_cpus: float = Field(1.0, gt=0, description="CPUs per trial worker (fractions allowed).")
    trial_gpus: float = Field(0.0, ge=0, description="GPUs per trial worker (fractions allowed).")
    max_concurrent: int | None = Field(
        None, ge=1, description="Trials at once. Default: what the cluster's resources fit."
    )
    seed: int = Field(0, ge=0, description="Seed of the sampler.")

    @model_validator(mode="after")
    def _search_ends(self) -> SearchConfig:
        if self.num_samples is None and self.time_budget_s is None:
            raise ValueError(
                "num_samples: null (no trial limit) needs time_budget_s, or the search never ends"
            )
        if self.brackets > 1 and self.scheduler != "asha":
            raise ValueError(
                f"brackets: {self.brackets} applies to scheduler: asha, not {self.scheduler!r}"
            )
        return self


class EvaluateConfig(_Section):
    """How a candidate is evaluated on the test split."""

    primary_metric: str | None = Field(
        None,
        description=(
            "Metric that decides the champion. Default: roc_auc for binary, f1_macro for "
            "multiclass, rmse for regression."
        ),
    )
    slices: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Named slices of the test split as pandas query expressions, e.g. "
            "{young: 'age < 30'}; every categorical value and numeric bucket is a slice too."
        ),
    )
    numeric_buckets: int = Field(4, ge=2, le=20, description="Quantile buckets per numeric column.")
    min_slice_rows: int = Field(
        30, ge=1, description="Slices with fewer test rows are listed but not judged."
    )
    importance: bool = Field(True, description="Permutation importance of the input columns.")
    importance_rows: int = Field(
        2000, ge=50, description="Test rows sampled for permutation importance."
    )
    batch_inference_min_rows: int = Field(
        100_000,
        ge=1,
        description="Test splits of this many rows or more are scored with Ray Data batch inference.",
    )


class GateConfig(_Section):
    """Rules a candidate must pass before it takes the champion alias."""

    minimums: dict[str, float] = Field(
        default_factory=dict,
        description="Test metric -> lowest allowed value (metrics where higher is better).",
    )
    maximums: dict[str, float] = Field(
        default_factory=dict,
        description="Test metric -> highest allowed value (log_loss, rmse, calibration_error...).",
    )
    margin: float = Field(
        0.0,
        ge=0,
        description=(
            "The candidate must beat the champion on the primary metric by more than this, "
            "at the lower bound of a paired bootstrap confidence interval."
        ),
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Level of that interval.")
    bootstrap_samples: int = Field(1000, ge=50, le=100_000, description="Bootstrap resamples.")
    slice_tolerance: float | None = Field(
        0.05,
        ge=0,
        description=(
            "No slice may be worse than the champion's same slice by more than this on the "
            "primary metric. null: no slice rule."
        ),
    )
    max_demographic_parity_difference: float | None = Field(
        None, ge=0, le=1, description="Largest allowed over the sensitive columns."
    )
    max_equalized_odds_difference: float | None = Field(
        None, ge=0, le=1, description="Largest allowed over the sensitive columns."
    )
    latency_p95_ms: float | None = Field(
        None, gt=0, description="Budget for the p95 of a single-row prediction, in ms."
    )
    max_size_mb: float | None = Field(None, gt=0, description="Largest packaged model, in MB.")


class NotifyConfig(_Section):
    """Webhooks on new versions, promotions, rejections and rollbacks."""

    webhook_url: str | None = Field(
        None,
        description="URL that receives a JSON POST per event. Default: $RAY_MLOPS_WEBHOOK_URL.",
    )
    retries: int = Field(5, ge=0, le=20, description="Retries of a failed delivery, with backoff.")
    timeout_s: float = Field(5.0, gt=0, description="Timeout of one delivery attempt.")


class WorkspaceConfig(_Section):
    root: str | None = Field(
        None,
        description=(
            "Folder whose .ray-mlops/ keeps a run's local state: the embedded MLflow store, "
            "Ray Train and Tune results (checkpoints), quarantined rows, captured traffic. "
            "Relative to the config file's folder. Default: the directory the command runs in."
        ),
    )
    storage: str | None = Field(
        None,
        description=(
            "Where a run's files go: Ray Train and Tune checkpoints and trial state, "
            "quarantined rows, captured traffic. A folder (relative to the config file's "
            "folder), a shared mount that every node sees, or an object store URI: "
            "s3://bucket/prefix (S3-compatible stores through AWS_ENDPOINT_URL and the other "
            "AWS_* variables) or gs://bucket/prefix. A cluster of more than one node needs a "
            "shared mount or an object store. Default: .ray-mlops under workspace.root."
        ),
    )


class TrackingConfig(_Section):
    tracking_uri: str | None = Field(
        None,
        description=(
            "MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else "
            "sqlite:///.ray-mlops/mlflow.db in the working directory."
        ),
    )
    experiment: str | None = Field(None, description="MLflow experiment. Default: the name.")
    # A tracking server that restarts or refuses connections for a while is waited for by
    # MLflow's own HTTP client (urllib3's Retry), set through its MLFLOW_HTTP_REQUEST_*
    # variables in every process that talks to the server: the driver, training's rank 0,
    # the model server's replicas. The limits are MLflow's (at most 10 retries, a factor of
    # at most 120 s, whole seconds). The defaults wait through a restart of up to a minute
    # and give up after about 70 s of refused connections.
    retries: int = Field(
        6,
        ge=0,
        le=10,
        description=(
            "Times a call to a tracking server is tried again after a refused or dropped "
            "connection, a timeout, or an HTTP 429/5xx answer (MLflow allows at most 10)."
        ),
    )
    retry_backoff_s: int = Field(
        1,
        ge=0,
        le=120,
        description=(
            "Backoff factor in whole seconds: the waits between tries are 0, 2, 4, 8, ... "
            "times it (each at most 120 s, plus up to 1 s of jitter). With 6 retries and 1 s "
            "a call gives up after about 70 s; each training attempt (train.max_failures) "
            "gets as long again."
        ),
    )
    request_timeout_s: int = Field(
        30,
        ge=1,
        le=3600,
        description=(
            "Seconds one request waits to connect, or for the server's next bytes, before "
            "that try counts as failed."
        ),
    )


class RegistryConfig(_Section):
    model_name: str | None = Field(None, description="Registered model name. Default: the name.")
    champion_alias: str = Field(
        "champion", pattern=r"^[A-Za-z][\w-]*$", description="Alias of the model that serves."
    )
    intended_use: str = Field(
        "", description="What the model is for and who uses it (the model card's first section)."
    )
    limitations: list[str] = Field(
        default_factory=list, description="Known limits to state on the model card."
    )


class AutoscalingConfig(_Section):
    """Ray Serve autoscaling of the model replicas (used when max_replicas > min_replicas)."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas (0 scales to zero).")
    max_replicas: int = Field(1, ge=1, description="Most replicas.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Requests in flight per replica that autoscaling aims at."
    )
    upscale_delay_s: float = Field(5.0, ge=0, description="Load must last this long to add one.")
    downscale_delay_s: float = Field(
        30.0, ge=0, description="Idleness must last this long to remove one."
    )
    # Serve averages ongoing requests over this window; it must exceed Serve's 10-s metrics
    # interval. The default is Serve's: steady; shorter follows load sooner, both ways.
    look_back_period_s: float = Field(
        30.0,
        gt=10.0,
        description="Window (s, above 10) over which ongoing requests are averaged to decide.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


class ApiKeyConfig(_Section):
    """One API key, stored as the SHA-256 of the key (never the key itself)."""

    name: str = Field(pattern=r"^[\w.@-]+$", description="Who holds the key (for logs and limits).")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the key.")
    role: Literal["predict", "admin"] = Field(
        "predict", description="predict: predictions and metadata; admin: also /metrics."
    )
    requests_per_s: float | None = Field(
        None, gt=0, description="This key's rate limit. Default: serve.rate_limit."
    )
    burst: int | None = Field(
        None, ge=1, description="This key's burst. Default: serve.rate_limit.burst."
    )


class AuthConfig(_Section):
    """API keys: requests carry 'Authorization: Bearer KEY' or 'X-API-Key: KEY'."""

    enabled: bool = Field(False, description="Require an API key on every model endpoint.")
    keys: list[ApiKeyConfig] = Field(default_factory=list, description="Accepted keys.")
    keys_file: str | None = Field(
        None, description="YAML list of keys (same fields), relative to the config file."
    )


class RateLimitConfig(_Section):
    """Per-key token bucket on each replica."""

    requests_per_s: float | None = Field(
        None,
        gt=0,
        description=(
            "Sustained requests per second per key (callers without a key share one bucket). "
            "Unset: only keys with their own requests_per_s are limited."
        ),
    )
    burst: int = Field(200, ge=1, description="Requests allowed at once above the rate.")


class CaptureConfig(_Section):
    """A sample of requests and responses written to Parquet, for monitoring."""

    enabled: bool = Field(False, description="Capture a sample of traffic.")
    sample_rate: float = Field(0.1, ge=0, le=1, description="Share of requests captured.")
    path: str = Field(
        "capture",
        description=(
            "Folder or object store URI of the Parquet files; a relative folder is taken "
            "under workspace.storage."
        ),
    )
    max_buffer: int = Field(10_000, ge=1, description="Records held before new ones are dropped.")
    flush_rows: int = Field(1000, ge=1, description="Rows per Parquet file at most.")
    flush_interval_s: float = Field(5.0, gt=0, description="Longest wait before a write.")


class RolloutConfig(_Section):
    """How the challenger alias shares traffic with the champion."""

    mode: Literal["none", "canary", "shadow"] = Field(
        "none",
        description=(
            "canary: canary_share of requests answered by the challenger; shadow: every "
            "request also sent to the challenger, whose answer is discarded."
        ),
    )
    challenger_alias: str = Field("challenger", pattern=r"^[A-Za-z][\w-]*$")
    canary_share: float = Field(0.1, ge=0, le=1, description="Share of traffic for canary mode.")


class ServeConfig(_Section):
    host: str = Field("127.0.0.1", description="Address the HTTP proxy binds to.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    proxy: Literal["haproxy", "default"] = Field(
        "haproxy",
        description=(
            "haproxy: Ray Serve's HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY=1), much faster; "
            "default: Ray Serve's Python proxy."
        ),
    )
    proxy_stats_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description=(
            "Port of HAProxy's stats page (GET /stats) on serve.host. Default: a free port "
            "picked at start, so several servers share a machine."
        ),
    )
    proxy_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description=(
            "Port of HAProxy's own Prometheus metrics (GET /metrics) on serve.host. Default: "
            "a free port picked at start."
        ),
    )
    num_replicas: int = Field(1, ge=1, description="Model replicas (without autoscaling).")
    autoscaling: AutoscalingConfig | None = Field(
        None, description="Autoscale the replicas instead of a fixed num_replicas."
    )
    max_replicas_per_node: int | None = Field(
        None,
        ge=1,
        description=(
            "Most replicas Ray places on one node (1: every replica on its own node, so a "
            "node failure takes one). Default: no limit."
        ),
    )
    cpus_per_replica: float = Field(
        1.0, gt=0, description="CPUs reserved by each replica (fractions share a core)."
    )
    gpus_per_replica: float = Field(0.0, ge=0, description="GPUs per replica (fractions allowed).")
    max_batch_size: int = Field(32, ge=1, description="Requests batched into one model call.")
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        description=(
            "Longest wait for a batch to fill. 0: a batch takes the requests that queued while "
            "the previous one ran, so a lone request never waits."
        ),
    )
    inline_rows: int = Field(
        256,
        ge=0,
        description=(
            "Batches of up to this many rows run on the replica's event loop; larger ones in "
            "a worker thread, so the loop keeps accepting requests meanwhile."
        ),
    )
    max_records: int = Field(1000, ge=1, description="Most records in one request (413 above).")
    max_body_bytes: int = Field(
        1_000_000, ge=1024, description="Largest request body in bytes (413 above)."
    )
    request_timeout_s: float = Field(
        10.0, gt=0, description="A request not answered by then gets 504."
    )
    alias_poll_s: float = Field(
        2.0, gt=0, description="How often replicas check whether the alias moved."
    )
    access_log: bool = Field(
        False,
        description=(
            "A Serve log line per request in the replica logs. Off by default: it costs CPU "
            "per request, and /metrics and capture already count and sample requests."
        ),
    )
    auth: AuthConfig = Field(default_factory=AuthConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_DURATION_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """A positive duration written as a whole number and a unit: s, m, h or d.

    Args:
        text: For example ``"90s"``, ``"5m"``, ``"1h"`` or ``"2d"``.

    Returns:
        The duration.

    Raises:
        ValueError: ``text`` is not of that form, or is zero.

    Example:
        >>> parse_duration("90m")
        datetime.timedelta(seconds=5400)
    """
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError("give a duration such as 90s, 5m, 1h or 2d")
    seconds = int(match[1]) * _DURATION_UNITS[match[2]]
    if seconds == 0:
        raise ValueError("a duration must be longer than zero")
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    """``duration`` in the largest unit that writes it whole, as :func:`parse_duration` reads it.

    Example:
        >>> format_duration(timedelta(hours=48)), format_duration(timedelta(seconds=90))
        ('2d', '90s')
    """
    seconds = int(duration.total_seconds())
    unit, size = next((u, n) for u, n in _DURATION_UNITS.items() if seconds % n == 0)
    return f"{seconds // size}{unit}"


def _duration_input(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        # Built in Python rather than read from YAML: it must still write as a duration string.
        seconds = value.total_seconds()
        if seconds <= 0 or seconds != int(seconds):
            raise ValueError(f"a duration must be a positive whole number of seconds, got {value}")
        return value
    return parse_duration(value)


# A timedelta in Python, written back as "1h" (not ISO 8601's "PT1H") by model_dump(mode="json"),
# so config_hash is stable and search.space's re-validation of the dumped config reads it.
Duration = Annotated[
    timedelta,
    BeforeValidator(_duration_input),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]

DriftDistance = Literal["wasserstein_normalised", "jensen_shannon"]
# The distances ray_mlops.data.drift computes (its DISTANCE_NAMES; config sits below the
# monitor in the import layers, so a unit test keeps the two equal).
DRIFT_DISTANCES: tuple[DriftDistance, ...] = get_args(DriftDistance)

MonitorSignal = Literal["drift", "estimated", "realised", "fairness"]
# What can breach a limit in a monitored window (ray_mlops.monitor.result.SIGNALS, kept equal
# by a unit test).
MONITOR_SIGNALS: tuple[MonitorSignal, ...] = get_args(MonitorSignal)
_DEFAULT_RETRAIN_SIGNALS: tuple[MonitorSignal, ...] = ("drift", "estimated", "realised")
_DEFAULT_MIN_DISTANCE: dict[DriftDistance, float] = {
    "wasserstein_normalised": 0.1,
    "jensen_shannon": 0.1,
}


class RetrainConfig(_Section):
    """When a breach of the monitor's limits retrains the model (through the same gate)."""

    enabled: bool = Field(False, description="Retrain when a window breaches a limit of `on`.")
    on: list[MonitorSignal] = Field(
        default_factory=lambda: list(_DEFAULT_RETRAIN_SIGNALS),
        min_length=1,
        description=(
            "Signals whose breach may trigger a retrain: drift (inputs or predictions), "
            "estimated (performance estimated without labels), realised (on labelled rows), "
            "fairness (realised, per data.sensitive column)."
        ),
    )
    min_labelled_rows: int = Field(
        500,
        ge=0,
        description=(
            "Labelled captured rows needed before a retrain starts; they join the original "
            "data in the training set."
        ),
    )
    cooldown: Duration = Field(
        timedelta(hours=24),
        description="Least time between two retrains of a model (s/m/h/d, e.g. 24h).",
    )

    @model_validator(mode="after")
    def _signals_are_named_once(self) -> RetrainConfig:
        if len(set(self.on)) != len(self.on):
            raise ValueError(f"on lists a signal twice: {self.on}")
        return self


class MonitorConfig(_Section):
    """``ray-mlops monitor``: drift and live quality of the served model, window by window."""

    window: Duration = Field(
        timedelta(hours=1),
        description=(
            "Length of a monitored window (s/m/h/d, e.g. 90s, 5m, 1h, 2d); `--every` defaults "
            "to it."
        ),
    )
    alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description=(
            "False discovery rate of each window's per-column drift tests (Benjamini-Hochberg "
            "over the input and prediction columns)."
        ),
    )
    min_distance: dict[DriftDistance, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=lambda: dict(_DEFAULT_MIN_DISTANCE),
        description=(
            "Effect-size floor per distance (wasserstein_normalised: numeric columns and "
            "scores; jensen_shannon: categorical columns and classes): a column drifted "
            "only when its test rejects and its distance reaches the floor. A distance "
            "left out has no floor."
        ),
    )
    min_rows: int = Field(
        200, ge=1, description="A window with fewer captured records is not tested."
    )
    sample_rows: int = Field(
        100_000,
        ge=1,
        description=(
            "Records of the current window sampled for the KS test and Wasserstein distance "
            "(category shares and PSI use every record)."
        ),
    )
    reference_rows: int = Field(
        20_000,
        ge=1,
        description="Train-split rows kept with each model version as its drift reference.",
    )
    experiment: str | None = Field(
        None,
        min_length=1,
        description=(
            "MLflow experiment of the monitoring runs (one per window). Default: the "
            "pipeline's experiment name followed by '-monitoring'."
        ),
    )
    labels_path: str = Field(
        "labels",
        description=(
            "Folder or object store URI of the label store (Parquet); a relative folder is "
            "taken under workspace.storage, like serve.capture.path."
        ),
    )
    minimums: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Metric -> lowest allowed value, judged on each window's estimated metrics and, "
            "once labels are joined, its realised ones (names as in gate.minimums)."
        ),
    )
    maximums: dict[str, float] = Field(
        default_factory=dict,
        description="Metric -> highest allowed value, judged like minimums.",
    )
    max_demographic_parity_difference: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Largest allowed on a window's labelled rows, over data.sensitive columns.",
    )
    max_equalized_odds_difference: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Largest allowed on a window's labelled rows, over data.sensitive columns.",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="With `--every`: serve the monitor's Prometheus series on /metrics here.",
    )
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)

    @model_validator(mode="after")
    def _sample_covers_a_tested_window(self) -> MonitorConfig:
        if self.sample_rows < self.min_rows:
            raise ValueError(
                f"sample_rows ({self.sample_rows}) is below min_rows ({self.min_rows}): a "
                "tested window would be sampled below the size that makes it testable"
            )
        return self


# --- governance (issue 28): one class per concern; each helper edits only its own class ---


class AuditConfig(_Section):
    """The append-only, hash-chained record of every state-changing action."""

    location: str | None = Field(
        None,
        description=(
            "Folder or object store URI of the audit log. Default: audit/ under "
            "workspace.storage, so every node of a cluster appends to the same log."
        ),
    )


class SigningConfig(_Section):
    """Model signing: every registered model's files signed, verified at every load."""

    enabled: bool = Field(
        True,
        description=(
            "Sign the model's files at registration and verify them at every load (the "
            "gate, promote, serving replicas); a version without a valid signature is refused."
        ),
    )
    key_dir: str | None = Field(
        None,
        description=(
            "Folder of the signing key pair, kept outside the workspace. Default: "
            "$RAY_MLOPS_KEY_DIR, else ~/.config/ray-mlops/signing (made on first use)."
        ),
    )
    trusted_public_keys: list[str] = Field(
        default_factory=list,
        description=(
            "PEM public keys (files) whose signatures a load accepts. Default: the public key "
            "of key_dir."
        ),
    )


class PoisoningConfig(_Section):
    """Checks of new training data against the previous fingerprinted version of its source."""

    enabled: bool = Field(
        True, description="Compare the data with the previous version before training."
    )
    max_changed_label_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Largest share of rows seen before whose label may change.",
    )
    max_duplicate_share: float = Field(
        0.02,
        ge=0,
        le=1,
        description=(
            "Largest rise, against the previous version, of the share of rows that copy "
            "another row exactly (every column but data.id_column, so a copy under a fresh id "
            "counts): copies injected in bulk. A rise, so that a source whose rows repeat by "
            "nature (few columns, coarse values) may grow."
        ),
    )
    min_distance: dict[DriftDistance, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=lambda: dict(zip(DRIFT_DISTANCES, (0.25, 0.2), strict=True)),
        description=(
            "Distance per column (the monitor's statistics, between samples of the previous "
            "and the new version) from which a column jumped, if its test also rejects; "
            "a distance left out is not checked."
        ),
    )
    max_jumped_columns: int = Field(
        0, ge=0, description="Columns that may jump before the run stops."
    )


class GovernanceConfig(_Section):
    """Who did what (audit), who may do what (roles), signed models, poisoned-data checks."""

    audit: AuditConfig = Field(default_factory=AuditConfig)
    policy: str | None = Field(
        None,
        description=(
            "YAML file of roles per actor (viewer, trainer, approver, deployer, admin). "
            "Default: no policy file; with an MLflow server running its basic-auth app, its "
            "own permissions decide."
        ),
    )
    four_eyes: bool = Field(
        False,
        description="A promotion's approver must differ from the actor who trained the candidate.",
    )
    signing: SigningConfig = Field(default_factory=SigningConfig)
    poisoning: PoisoningConfig = Field(default_factory=PoisoningConfig)


class PipelineConfig(_Section):
    """A whole pipeline: what data, which features, what model, where it is tracked and served."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][\w.-]*$",
        description="Pipeline name: the MLflow experiment and registered model name by default.",
    )
    task: Task = Field("classification", description="classification or regression.")
    data: DataConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    workspace: WorkspaceConfig = Field(default_factory=WorkspaceConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    governance: GovernanceConfig = Field(default_factory=GovernanceConfig)

    @model_validator(mode="after")
    def _selection_metric_fits_task(self) -> PipelineConfig:
        allowed = SELECTION_METRICS[self.task]
        if self.train.selection_metric not in allowed:
            raise ValueError(
                f"train.selection_metric {self.train.selection_metric!r} is not computed for "
                f"{self.task}; choose one of {sorted(allowed)}"
            )
        _check_space_paths(self)
        if self.search.metric is not None and self.search.metric not in allowed:
            raise ValueError(
                f"search.metric {self.search.metric!r} is not reported for {self.task}; "
                f"choose one of {sorted(allowed)}"
            )
        return self

    @property
    def model_name(self) -> str:
        """Registered model name."""
        return self.registry.model_name or self.name

    @property
    def experiment_name(self) -> str:
        """MLflow experiment name."""
        return self.tracking.experiment or self.name

    @property
    def monitoring_experiment_name(self) -> str:
        """MLflow experiment of the monitoring runs."""
        return self.monitor.experiment or f"{self.experiment_name}-monitoring"

    def config_hash(self) -> str:
        """A stable hash of the effective config (defaults included)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _space_values(space: dict[str, Dimension]) -> list[tuple[str, Any]]:
    """(path, value) pairs that probe every dimension: its bounds, or each choice."""
    probes: list[tuple[str, Any]] = []
    for path, dim in space.items():
        bounds = dim.uniform or dim.loguniform or dim.integer
        probes += [(path, v) for v in (bounds if bounds is not None else dim.choice or [])]
        for branch in (dim.when or {}).values():
            probes += _space_values(branch)
    return probes


def _check_space_paths(cfg: PipelineConfig) -> None:
    """Every path of search.space must exist and accept its values, named when not."""
    if not cfg.search.space:
        return
    base = cfg.model_dump(mode="json", exclude={"search"})
    for path, value in _space_values(cfg.search.space):
        doc = json.loads(json.dumps(base))
        node = doc
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else {}
        if not isinstance(node, dict):
            raise ValueError(f"search.space.{path}: {'.'.join(parents)} is not a section")
        node[leaf] = value
        try:
            PipelineConfig.model_validate(doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(
                f"search.space.{path}: value {value!r} does not fit the config "
                f"({where}: {first['msg']})"
            ) from None


class LoadedConfig(BaseModel):
    """A validated config together with the file it came from."""

    model_config = ConfigDict(frozen=True)

    pipeline: PipelineConfig
    source: Path

    @property
    def base_dir(self) -> Path:
        """Folder against which relative data paths are resolved."""
        return self.source.parent


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a pipeline config file.

    Args:
        path: YAML file.

    Returns:
        The validated config and its source path.

    Raises:
        ConfigError: the file is missing, is not YAML, or breaks the schema; the message names
            each bad key path, the value given and what is allowed.
    """
    source = Path(path).resolve()
    if not source.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(source.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return LoadedConfig(pipeline=parse_config(raw, origin=str(path)), source=source)


def parse_config(raw: Any, origin: str = "config") -> PipelineConfig:
    """Validate an already-parsed config mapping; see :func:`load_config`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of settings, got {type(raw).__name__}")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        raise ConfigError(f"{origin}: invalid config\n" + "\n".join(problems)) from None


def _describe(error: Any) -> str:
    """One line per problem: key path, what was given, what is allowed."""
    loc = [str(part) for part in error["loc"]]
    key_path = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1]))
        return f"  - {key_path}: unknown key; allowed here: {allowed}"
    if error["type"] == "missing":
        return f"  - {key_path}: required key is missing"
    if not loc:  # a rule across sections: its message names the keys, the input is all
        return f"  - {error['msg'].removeprefix('Value error, ')}"
    given = error.get("input")
    return f"  - {key_path}: {error['msg']} (given: {given!r})"


def _allowed_keys(parent_loc: list[str]) -> list[str]:
    """Field names of the section at ``parent_loc``."""
    model: type[BaseModel] = PipelineConfig
    parts = iter(parent_loc)
    for part in parts:
        annotation = model.model_fields[part].annotation
        if get_origin(annotation) is dict:  # a mapping of name -> section: skip the name
            annotation = get_args(annotation)[1]
            if next(parts, None) is None:
                return []
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)
