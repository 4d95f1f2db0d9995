"""User networks: a function, named in the config, that builds an ``nn.Module``.

The builder is named ``file.py:function`` (relative to the config file) or
``package.module:function``. Its module's source is read once, on the driver, and travels in
the :class:`~ray_mlops.models.spec.ModelSpec`; workers and packaged models rebuild the
module from that source, so neither needs the file on its own disk.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import types
from collections.abc import Callable
from pathlib import Path

from torch import nn

from ray_mlops.errors import ConfigError

Builder = Callable[..., nn.Module]


def read_builder_source(reference: str, base_dir: Path) -> str:
    """The source of the module that holds the builder named by ``reference``.

    Raises:
        ConfigError: the file or module is missing, or is not plain Python source.
    """
    location, _, _function = reference.partition(":")
    if location.endswith(".py"):
        path = Path(location) if Path(location).is_absolute() else base_dir / location
        if not path.is_file():
            raise ConfigError(f"model.builder: file not found: {path}")
        return path.read_text()
    try:
        module = importlib.import_module(location)
    except ImportError as exc:
        raise ConfigError(f"model.builder: cannot import module {location!r}: {exc}") from None
    source_file = inspect.getsourcefile(module)
    if source_file is None:
        raise ConfigError(f"model.builder: module {location!r} has no Python source file")
    return Path(source_file).read_text()


def load_builder(reference: str, source: str) -> Builder:
    """Rebuild the builder's module from ``source`` and return the named function.

    The module is registered in ``sys.modules`` under a name derived from its content, so
    classes it defines can be pickled and the same source is executed only once per process.

    Raises:
        ConfigError: the source does not run, or lacks the function.
    """
    location, _, function = reference.partition(":")
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    name = f"ray_mlops_user_model_{digest}"
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__file__ = location
        try:
            exec(compile(source, location, "exec"), module.__dict__)  # nosec B102  # model.builder: the config author's own code, run by design
        except Exception as exc:
            raise ConfigError(
                f"model.builder: {location} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        sys.modules[name] = module
    builder = getattr(module, function, None)
    if not callable(builder):
        raise ConfigError(f"model.builder: {location} has no function {function!r}")
    return builder
