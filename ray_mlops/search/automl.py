"""The AutoML space: model family, depth and width, regularisation, optimisation, encodings.

Ranges follow what tabular deep-learning studies search over for MLPs of this size (depth 1
to 3, width 64 to 512, dropout up to 0.5, AdamW learning rate 1e-4 to 3e-2, weight decay
1e-6 to 1e-2); ASHA then spends the epochs on the trials that look good early. The user's
``search.space`` is merged over it (a path given there replaces the ready one), and each
``search.plugins`` builder becomes one more model family.

Example:
    >>> from ray_mlops.config import parse_config
    >>> cfg = parse_config({"name": "x", "data": {"path": "d.csv", "target": "y",
    ...     "numeric": ["a"]}, "search": {"mode": "automl"}})
    >>> sorted(search_space(cfg))[:3]
    ['features.categorical.encode', 'features.numeric.scale', 'model.type']
"""

from __future__ import annotations

from ray_mlops.config import Dimension, PipelineConfig

_HIDDEN_SIZES = [[64], [128], [256], [128, 64], [256, 128], [512, 256], [256, 128, 64]]


def automl_space(plugins: list[str]) -> dict[str, Dimension]:
    """The ready space, with one ``custom`` family per plugin builder."""
    mlp = {
        "model.hidden_sizes": Dimension(choice=_HIDDEN_SIZES),
        "model.dropout": Dimension(uniform=(0.0, 0.5)),
        "model.normalization": Dimension(choice=["none", "batch", "layer"]),
    }
    families: list[str] = ["mlp", "linear"]
    when: dict[str, dict[str, Dimension]] = {"mlp": mlp}
    if plugins:
        families.append("custom")
        when["custom"] = {"model.builder": Dimension(choice=list(plugins))}
    return {
        "model.type": Dimension(choice=families, when=when),
        "train.learning_rate": Dimension(loguniform=(1e-4, 3e-2)),
        "train.weight_decay": Dimension(loguniform=(1e-6, 1e-2)),
        "train.batch_size": Dimension(choice=[128, 256, 512, 1024]),
        "features.numeric.scale": Dimension(choice=["standard", "robust", "minmax"]),
        "features.categorical.encode": Dimension(choice=["onehot", "ordinal", "hashing"]),
    }


def search_space(cfg: PipelineConfig) -> dict[str, Dimension]:
    """The space a search samples: the config's, or the AutoML one with the config's over it."""
    if cfg.search.mode == "custom":
        return dict(cfg.search.space)
    return automl_space(cfg.search.plugins) | dict(cfg.search.space)
