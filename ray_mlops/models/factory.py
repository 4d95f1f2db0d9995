"""Build the network a spec describes, and check that it fits the data and the head."""

from __future__ import annotations

import torch
from torch import nn

from ray_mlops.errors import ConfigError
from ray_mlops.models.custom import load_builder
from ray_mlops.models.mlp import build_linear, build_mlp
from ray_mlops.models.spec import ModelSpec


def build_model(spec: ModelSpec) -> nn.Module:
    """A freshly initialised network for ``spec`` (seed torch first for reproducibility)."""
    if spec.kind == "linear":
        return build_linear(spec)
    if spec.kind == "custom":
        if spec.builder is None or spec.builder_source is None:
            raise ConfigError("model spec of kind 'custom' lacks its builder")
        builder = load_builder(spec.builder, spec.builder_source)
        network = builder(spec.n_inputs, spec.n_outputs, **spec.options)
        if not isinstance(network, nn.Module):
            raise ConfigError(
                f"model.builder: {spec.builder} returned {type(network).__name__}, "
                "not a torch.nn.Module"
            )
        return network
    return build_mlp(spec)


def check_network(spec: ModelSpec) -> None:
    """Run a two-row batch through the network and check the output shape."""
    try:
        network = build_model(spec).eval()
        with torch.inference_mode():
            shape = tuple(network(torch.zeros(2, spec.n_inputs)).shape)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"model: building or running the {spec.kind} network failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if shape != (2, spec.n_outputs):
        raise ConfigError(
            f"model: the {spec.kind} network maps (2, {spec.n_inputs}) to {shape}; the "
            f"{spec.head} head needs (2, {spec.n_outputs})"
        )
