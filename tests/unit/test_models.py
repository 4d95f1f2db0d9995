"""Built-in networks, heads and user builders: shapes, losses and packaging, without Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional

from ray_mlops.config import ModelConfig
from ray_mlops.errors import ConfigError
from ray_mlops.models.factory import build_model
from ray_mlops.models.from_config import make_spec
from ray_mlops.models.heads import class_probabilities, loss_sum, predicted_class
from ray_mlops.models.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


def _layers(network: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [m for m in network.modules() if isinstance(m, kind)]


@pytest.mark.parametrize(
    ("normalization", "norm_class"), [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)]
)
def test_mlp_has_configured_depth_width_dropout_and_normalization(
    normalization: str, norm_class: type[nn.Module]
) -> None:
    cfg = ModelConfig(hidden_sizes=[32, 16, 8], dropout=0.25, normalization=normalization)
    spec = make_spec(cfg, "classification", n_inputs=10, n_labels=3, base_dir=ROOT)
    network = build_model(spec)
    linears = _layers(network, nn.Linear)
    assert [(m.in_features, m.out_features) for m in linears] == [
        (10, 32),
        (32, 16),
        (16, 8),
        (8, 3),
    ]
    assert [m.p for m in _layers(network, nn.Dropout)] == [0.25] * 3
    assert len(_layers(network, norm_class)) == 3


def test_linear_baseline_is_one_layer_with_binary_head() -> None:
    spec = make_spec(ModelConfig(type="linear"), "classification", 7, 2, ROOT)
    network = build_model(spec)
    assert spec.head == "binary" and spec.n_outputs == 1
    assert len(_layers(network, nn.Linear)) == 1
    assert network(torch.zeros(4, 7)).shape == (4, 1)


def test_heads_match_torch_losses_and_give_probabilities() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 1)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    expected = functional.binary_cross_entropy_with_logits(
        logits[:, 0], labels.float(), reduction="sum"
    )
    assert torch.allclose(loss_sum(logits, labels, "binary"), expected)
    probabilities = class_probabilities(logits, "binary")
    assert torch.allclose(probabilities[:, 1], torch.sigmoid(logits[:, 0]).double())
    assert torch.equal(predicted_class(logits, "binary"), probabilities.argmax(dim=1))

    many = torch.randn(6, 4)
    classes = torch.tensor([0, 3, 2, 1, 3, 0])
    assert torch.allclose(
        loss_sum(many, classes, "multiclass"),
        functional.cross_entropy(many, classes, reduction="sum"),
    )
    assert torch.allclose(
        class_probabilities(many, "multiclass").sum(dim=1), torch.ones(6).double()
    )

    values = torch.randn(6, 1)
    targets = torch.randn(6)
    assert torch.allclose(
        loss_sum(values, targets, "regression"), ((values[:, 0] - targets) ** 2).sum()
    )


def test_user_builder_from_a_file_travels_as_source() -> None:
    cfg = ModelConfig(
        type="custom", builder="models/residual_mlp.py:build", options={"width": 24, "blocks": 3}
    )
    spec = make_spec(cfg, "classification", n_inputs=12, n_labels=5, base_dir=CONFIGS)
    assert spec.builder_source is not None and "class ResidualBlock" in spec.builder_source
    rebuilt = build_model(ModelSpec.from_json(spec.to_json()))  # no file needed any more
    blocks = [m for m in rebuilt.modules() if type(m).__name__ == "ResidualBlock"]
    assert len(blocks) == 3
    assert rebuilt(torch.zeros(2, 12)).shape == (2, 5)


def test_user_builder_from_an_importable_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_nets.py").write_text(
        "from torch import nn\n"
        "def tiny(n_inputs, n_outputs, hidden=3):\n"
        "    return nn.Sequential(nn.Linear(n_inputs, hidden), nn.Tanh(), nn.Linear(hidden, n_outputs))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = ModelConfig(type="custom", builder="my_nets:tiny", options={"hidden": 5})
    spec = make_spec(cfg, "regression", n_inputs=4, n_labels=None, base_dir=tmp_path)
    assert spec.head == "regression"
    assert _layers(build_model(spec), nn.Linear)[0].out_features == 5
    sys.modules.pop("my_nets", None)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def build(n_inputs, n_outputs):\n    return 3\n", "not a torch.nn.Module"),
        (
            "from torch import nn\ndef build(n_inputs, n_outputs):\n    return nn.Linear(n_inputs, 7)\n",
            r"maps \(2, 4\) to \(2, 7\)",
        ),
        ("def other():\n    pass\n", "has no function 'build'"),
        ("import not_a_module_anywhere\n", "failed to load"),
    ],
)
def test_bad_user_builders_are_named_before_training(
    tmp_path: Path, source: str, message: str
) -> None:
    (tmp_path / "net.py").write_text(source)
    cfg = ModelConfig(type="custom", builder="net.py:build")
    with pytest.raises(ConfigError, match=message):
        make_spec(cfg, "classification", n_inputs=4, n_labels=3, base_dir=tmp_path)


def test_missing_builder_file_is_a_config_error(tmp_path: Path) -> None:
    cfg = ModelConfig(type="custom", builder="nowhere.py:build")
    with pytest.raises(ConfigError, match="file not found"):
        make_spec(cfg, "classification", 4, 2, tmp_path)
