"""Search spaces: YAML dimensions -> Optuna distributions, conditionals, validation at load."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from ray_mlops.config import parse_config
from ray_mlops.errors import ConfigError
from ray_mlops.search.automl import search_space
from ray_mlops.search.space import apply_params, decode_params, suggest

DATA = {"path": "d.csv", "target": "y", "numeric": ["a"], "categorical": ["c"]}
SPACE: dict[str, Any] = {
    "train.learning_rate": {"loguniform": [1e-4, 1e-1]},
    "train.batch_size": {"choice": [64, 128]},
    "train.epochs": {"int": [2, 8], "step": 2},
    "model.type": {
        "choice": ["mlp", "linear"],
        "when": {
            "mlp": {
                "model.hidden_sizes": {"choice": [[8], [16, 8]]},
                "model.dropout": {"uniform": [0.0, 0.5]},
            }
        },
    },
}


def _config(space: dict[str, Any], **search: Any) -> Any:
    return parse_config({"name": "s", "data": DATA, "search": {"space": space, **search}})


def _sampled(space: dict[str, Any], trials: int = 40) -> list[optuna.trial.FrozenTrial]:
    cfg = _config(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(lambda t: suggest(t, cfg.search.space) or 0.0, n_trials=trials)
    return study.trials


def test_dimensions_map_to_optuna_distributions() -> None:
    distributions = {}
    for trial in _sampled(SPACE):
        distributions |= trial.distributions
    assert distributions["train.learning_rate"] == optuna.distributions.FloatDistribution(
        1e-4, 1e-1, log=True
    )
    assert distributions["train.batch_size"] == optuna.distributions.CategoricalDistribution(
        [64, 128]
    )
    assert distributions["train.epochs"] == optuna.distributions.IntDistribution(2, 8, step=2)
    assert distributions["model.dropout"] == optuna.distributions.FloatDistribution(0.0, 0.5)
    # Lists travel as JSON text and decode back to lists.
    assert distributions["model.hidden_sizes"].choices == ("[8]", "[16, 8]")


def test_conditional_parameters_appear_only_with_their_parent_choice() -> None:
    trials = _sampled(SPACE)
    kinds = {t.params["model.type"] for t in trials}
    assert kinds == {"mlp", "linear"}
    for trial in trials:
        has_mlp_params = {"model.hidden_sizes", "model.dropout"} <= set(trial.params)
        assert has_mlp_params == (trial.params["model.type"] == "mlp"), trial.params


def test_decoded_values_make_a_valid_config() -> None:
    cfg = _config(SPACE)
    for trial in _sampled(SPACE, trials=10):
        values = decode_params(cfg.search.space, trial.params)
        doc = apply_params({"name": "t", "data": DATA}, values)
        trial_cfg = parse_config(doc)
        assert trial_cfg.train.batch_size == values["train.batch_size"]
        if values["model.type"] == "mlp":
            assert trial_cfg.model.hidden_sizes in ([8], [16, 8])


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"train.lr": {"uniform": [0.1, 1.0]}}, "search.space.train.lr"),
        ({"model.dropout": {"uniform": [0.0, 1.5]}}, "search.space.model.dropout: value 1.5"),
        ({"train.batch_size": {"int": [8, 4]}}, "search.space.train.batch_size"),
        ({"train.learning_rate": {"loguniform": [0.0, 1.0]}}, "loguniform needs low > 0"),
        ({"model.type": {"choice": ["mlp"], "when": {"gbm": {}}}}, "not among the choices"),
        ({"train.seed": {"int": [1, 3], "choice": [1]}}, "exactly one of"),
        (
            {"model.type": {"choice": ["mlp"], "when": {"mlp": {"model.depth": {"int": [1, 2]}}}}},
            "search.space.model.depth",
        ),
    ],
)
def test_invalid_spaces_fail_at_load_naming_the_key_path(
    space: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        _config(space)


def test_automl_space_covers_families_encodings_and_plugins() -> None:
    cfg = _config({"train.batch_size": {"choice": [32]}}, mode="automl", plugins=["m.py:build"])
    space = search_space(cfg)
    assert space["model.type"].choice == ["mlp", "linear", "custom"]
    assert space["model.type"].when is not None
    assert space["model.type"].when["custom"]["model.builder"].choice == ["m.py:build"]
    assert space["train.batch_size"].choice == [32]  # the config's dimension wins
    assert "features.categorical.encode" in space and "features.numeric.scale" in space
