"""Search spaces: the YAML dimensions of ``search.space`` as Optuna's define-by-run API.

A space maps config paths (``train.learning_rate``, ``model.hidden_sizes``,
``features.categorical.encode``) to dimensions (see :class:`ray_mlops.config.Dimension`).
A ``choice`` may carry ``when``: a sub-space sampled only when that value is chosen, so a
parameter that only matters for one model family is only suggested for it.

Optuna accepts only None, bool, int, float and str as categorical values; other choices
(lists such as hidden sizes) travel as their JSON text and are decoded in the trial.

Example:
    >>> from ray_mlops.config import Dimension
    >>> space = {"train.batch_size": Dimension(choice=[64, 128])}
    >>> apply_params({"train": {"epochs": 3}}, {"train.batch_size": 64})
    {'train': {'epochs': 3, 'batch_size': 64}}
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ray_mlops.config import Dimension

if TYPE_CHECKING:
    import optuna

_PRIMITIVE = (type(None), bool, int, float, str)


def _encoded(choices: list[Any]) -> list[Any]:
    if all(isinstance(c, _PRIMITIVE) for c in choices):
        return list(choices)
    return [json.dumps(c) for c in choices]


def suggest(trial: optuna.trial.Trial, space: Mapping[str, Dimension]) -> None:
    """Suggest every dimension of ``space`` on ``trial``, descending into chosen sub-spaces.

    A define-by-run function for ``OptunaSearch``: the values land in ``trial.params`` under
    their config paths (decode them with :func:`decode_params`).
    """
    for path, dim in space.items():
        if dim.uniform is not None:
            trial.suggest_float(path, *dim.uniform, step=dim.step)
        elif dim.loguniform is not None:
            trial.suggest_float(path, *dim.loguniform, log=True)
        elif dim.integer is not None:
            step = int(dim.step or 1)
            trial.suggest_int(path, *dim.integer, step=step, log=dim.log)
        else:
            assert dim.choice is not None
            encoded = _encoded(dim.choice)
            picked = trial.suggest_categorical(path, encoded)
            value = dim.choice[encoded.index(picked)]
            branch = (dim.when or {}).get(_branch_key(value))
            if branch:
                suggest(trial, branch)


def _branch_key(value: Any) -> str:
    """How a choice's value is named under ``when`` (YAML keys are strings)."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def iter_dimensions(space: Mapping[str, Dimension]) -> Iterator[tuple[str, Dimension]]:
    """Every (path, dimension) of the space, sub-spaces included."""
    for path, dim in space.items():
        yield path, dim
        for branch in (dim.when or {}).values():
            yield from iter_dimensions(branch)


def decode_params(space: Mapping[str, Dimension], params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's values (JSON text for non-primitive choices) back to config values."""
    dims = dict(iter_dimensions(space))
    decoded: dict[str, Any] = {}
    for path, value in params.items():
        dim = dims.get(path)
        if dim is not None and dim.choice is not None and _encoded(dim.choice) != dim.choice:
            value = json.loads(value) if isinstance(value, str) else value
        decoded[path] = value
    return decoded


def trial_values(
    space: Mapping[str, Dimension], config: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A Tune trial's config values by config path (Tune's own ``_`` keys left out)."""
    params = {k: v for k, v in (config or {}).items() if not k.startswith("_")}
    return decode_params(space, params)


def apply_params(doc: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the config document with each dotted path set to its value."""
    result = copy.deepcopy(dict(doc))
    for path, value in params.items():
        node = result
        *parents, leaf = path.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[leaf] = value
    return result
