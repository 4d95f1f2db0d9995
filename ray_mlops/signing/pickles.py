"""Find pickle files in a model folder: nothing is ever unpickled from one.

A ray-mlops model holds its weights as a ``torch.save`` zip read with
``torch.load(weights_only=True)``, its spec and feature state as JSON, and its code as
Python files (MLflow's "models from code"); a pickle has no business there, and loading one
runs whatever it names.
"""

from __future__ import annotations

from pathlib import Path

# Suffixes of pickle-based formats (joblib and cloudpickle write pickles too).
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pck", ".joblib", ".cloudpickle", ".dill"})
# Pickle protocols 2 to 5 open with PROTO (0x80) and the protocol number: a legacy
# ``torch.save`` (not zip) file or any pickle renamed to look harmless starts so.
_PROTO = 0x80
_PROTOCOLS = range(2, 6)


def is_pickle(path: Path) -> bool:
    """Whether ``path`` is a pickle, by its suffix or its first two bytes."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    with path.open("rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == _PROTO and head[1] in _PROTOCOLS


def find_pickles(folder: Path) -> list[str]:
    """The pickle files under ``folder``, as sorted relative POSIX paths."""
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and is_pickle(p)
    )
