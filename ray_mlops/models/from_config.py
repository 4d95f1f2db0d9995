"""Turn the config's model section into a :class:`ModelSpec` (driver side only)."""

from __future__ import annotations

from pathlib import Path

from ray_mlops.config import ModelConfig
from ray_mlops.models.custom import read_builder_source
from ray_mlops.models.factory import check_network
from ray_mlops.models.spec import Head, ModelSpec, head_for, outputs_for


def make_spec(
    model: ModelConfig,
    task: str,
    n_inputs: int,
    n_labels: int | None,
    base_dir: Path,
) -> ModelSpec:
    """The spec of ``model`` (a :class:`ray_mlops.config.ModelConfig`) for this data and task.

    Builds the network once on a tiny batch, so a builder that fails or returns the wrong
    shape is reported before any worker starts.

    Raises:
        ConfigError: the builder cannot be loaded, fails, or returns a network whose output
            does not have the head's width.
    """
    head: Head = head_for(task, n_labels)
    source = read_builder_source(model.builder, base_dir) if model.builder else None
    spec = ModelSpec(
        n_inputs=n_inputs,
        n_outputs=outputs_for(head, n_labels),
        head=head,
        kind=model.type,
        hidden_sizes=list(model.hidden_sizes),
        dropout=model.dropout,
        normalization=model.normalization,
        builder=model.builder,
        builder_source=source,
        options=dict(model.options),
    )
    check_network(spec)
    return spec
