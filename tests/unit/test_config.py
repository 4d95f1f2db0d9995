from pathlib import Path

import pytest
import yaml

from ray_mlops.config import PipelineConfig, load_config, parse_config
from ray_mlops.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {"name": "demo", "data": {"path": "x.csv", "target": "y", "numeric": ["a"]}}


def test_quickstart_config_is_valid_and_fills_defaults() -> None:
    loaded = load_config(ROOT / "configs" / "quickstart.yaml")
    cfg = loaded.pipeline
    assert cfg.name == "adult-income"
    assert cfg.train.num_workers == 2
    assert cfg.registry.champion_alias == "champion"
    assert (loaded.base_dir / cfg.data.path).resolve().is_file()


def test_unknown_key_names_path_and_allowed_keys() -> None:
    raw = {**MINIMAL, "train": {"epochz": 3}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, origin="p.yaml")
    message = str(caught.value)
    assert "train.epochz: unknown key" in message
    assert "epochs" in message and "batch_size" in message
    assert caught.value.exit_code == 2


def test_wrong_type_names_path_and_value() -> None:
    raw = {**MINIMAL, "train": {"epochs": "many"}}
    with pytest.raises(ConfigError, match=r"train\.epochs: .*integer.*given: 'many'"):
        parse_config(raw)


def test_value_outside_allowed_set_lists_choices() -> None:
    raw = {**MINIMAL, "features": {"numeric": {"scale": "zscore"}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert "features.numeric.scale" in str(caught.value)
    assert "'standard'" in str(caught.value) and "'minmax'" in str(caught.value)


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match=r"data\.target: required key is missing"):
        parse_config({"name": "demo", "data": {"path": "x.csv", "numeric": ["a"]}})


def test_target_listed_as_feature_is_refused() -> None:
    raw = {"name": "demo", "data": {"path": "x.csv", "target": "a", "numeric": ["a"]}}
    with pytest.raises(ConfigError, match="also listed as a feature"):
        parse_config(raw)


def test_every_problem_is_reported_at_once() -> None:
    raw = {**MINIMAL, "train": {"epochs": 0, "batch_size": -1}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert "train.epochs" in str(caught.value) and "train.batch_size" in str(caught.value)


def test_yaml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_config_hash_changes_with_settings_only() -> None:
    a = PipelineConfig.model_validate(MINIMAL)
    b = PipelineConfig.model_validate(yaml.safe_load(yaml.safe_dump(MINIMAL)))
    c = PipelineConfig.model_validate({**MINIMAL, "train": {"epochs": 9}})
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_search_without_a_trial_limit_needs_a_time_budget() -> None:
    unlimited = {**MINIMAL, "search": {"num_samples": None}}
    with pytest.raises(ConfigError, match=r"search: .*needs time_budget_s"):
        parse_config(unlimited)
    budgeted = parse_config({**MINIMAL, "search": {"num_samples": None, "time_budget_s": 60}})
    assert budgeted.search.num_samples is None and budgeted.search.time_budget_s == 60


def test_autoscaling_look_back_reaches_serve_and_must_exceed_its_metrics_interval() -> None:
    import warnings

    from ray.serve.config import AutoscalingConfig

    from ray_mlops.serve.deployment import deployment_options

    scaling = {"min_replicas": 1, "max_replicas": 3, "look_back_period_s": 12}
    cfg = parse_config({**MINIMAL, "serve": {"autoscaling": scaling}})
    options = deployment_options(cfg)["autoscaling_config"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Serve only warns about a window at or below 10 s
        assert AutoscalingConfig(**options).look_back_period_s == 12
    too_short = {**MINIMAL, "serve": {"autoscaling": {**scaling, "look_back_period_s": 5}}}
    with pytest.raises(ConfigError, match=r"serve\.autoscaling\.look_back_period_s: .*10"):
        parse_config(too_short)
