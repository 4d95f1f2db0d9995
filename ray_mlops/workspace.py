"""Where a run reads and writes its local state: one object, made once, passed down.

A :class:`Workspace` is a folder whose ``.ray-mlops/`` holds the embedded MLflow store, Ray
Train and Tune results (checkpoints), quarantined rows and captured traffic. It is made once
at the entry point (the CLI, or :func:`ray_mlops.run_pipeline`) from the config's
``workspace.root``; code below the entry point asks it for paths and never reads the process's
working directory, so a library caller, a Ray Job and a test all say where state goes.

Example:
    >>> from pathlib import Path
    >>> ws = Workspace(Path("/srv/project"))
    >>> ws.ray_results
    PosixPath('/srv/project/.ray-mlops/ray_results')
    >>> ws.quarantine_dir("0a1b")
    PosixPath('/srv/project/.ray-mlops/quarantine/0a1b')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ray_mlops.local_state import DEFAULT_HOME, ensure_home, resolve_tracking_uri

if TYPE_CHECKING:
    from ray_mlops.config import LoadedConfig

__all__ = ["Workspace"]


@dataclass(frozen=True)
class Workspace:
    """A project folder and the local state under its ``.ray-mlops/``.

    Args:
        root: The folder, absolute (see :meth:`for_config`).
    """

    root: Path

    @classmethod
    def of(cls, loaded: LoadedConfig, invoked_from: Path | None = None) -> Workspace:
        """The workspace of a loaded config, made at an entry point.

        Args:
            loaded: The config and the file it came from.
            invoked_from: Where the command was started. None: this process's working
                directory, the one place in ray-mlops that reads it.
        """
        return cls.for_config(
            loaded.pipeline.workspace.root,
            loaded.base_dir,
            Path.cwd() if invoked_from is None else invoked_from,
        )

    @classmethod
    def here(cls) -> Workspace:
        """The working directory's workspace, for commands that take no config (``models``)."""
        return cls(Path.cwd().resolve())

    @classmethod
    def for_config(cls, configured: str | None, config_dir: Path, invoked_from: Path) -> Workspace:
        """The workspace a config names, made at the entry point.

        Args:
            configured: ``workspace.root`` of the config (None: not set).
            config_dir: Folder of the config file; a relative ``workspace.root`` is taken
                from it, as relative data paths are.
            invoked_from: Where the command was started (the CLI passes its working
                directory): the workspace when the config names none.
        """
        if configured is None:
            return cls(invoked_from.resolve())
        root = Path(configured).expanduser()
        return cls((root if root.is_absolute() else config_dir / root).resolve())

    @property
    def home(self) -> Path:
        """``.ray-mlops/`` under the root (not created)."""
        return self.root / DEFAULT_HOME

    def ensure_home(self) -> Path:
        """Create ``.ray-mlops/``, marked ignored by git and Ray Job uploads; its path."""
        return ensure_home(self.root)

    def tracking_uri(self, configured: str | None) -> str:
        """The config's tracking URI, else ``$MLFLOW_TRACKING_URI``, else the embedded store."""
        return resolve_tracking_uri(configured, self.root)

    @property
    def ray_results(self) -> Path:
        """Ray Train and Tune storage: checkpoints and trial state."""
        return self.home / "ray_results"

    def quarantine_dir(self, run_id: str) -> Path:
        """Where the rows a run quarantined are written."""
        return self.home / "quarantine" / run_id

    def resolve(self, path: str | Path) -> Path:
        """``path`` as given when absolute, else under the root (capture folders, say)."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.root / candidate
