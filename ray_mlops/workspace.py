"""Where a run reads and writes its state: one object, made once, passed down.

A :class:`Workspace` has a root folder, whose ``.ray-mlops/`` holds the embedded MLflow store,
and a storage location for what a run writes: Ray Train and Tune results (checkpoints),
quarantined rows and captured traffic. The storage is ``.ray-mlops/`` by default, or the
config's ``workspace.storage``: a shared mount or an object store URI (``s3://bucket/prefix``),
which every node of a cluster reaches. It is made once at the entry point (the CLI, or
:func:`ray_mlops.run_pipeline`); code below the entry point asks it for locations and never
reads the process's working directory, so a library caller, a Ray Job and a test all say
where state goes.

Example:
    >>> from pathlib import Path
    >>> ws = Workspace(Path("/srv/project"))
    >>> ws.ray_results
    '/srv/project/.ray-mlops/ray_results'
    >>> Workspace(Path("/srv/project"), "s3://bucket/runs").quarantine_location("0a1b")
    's3://bucket/runs/quarantine/0a1b'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ray_mlops.local_state import DEFAULT_HOME, ensure_home, resolve_tracking_uri
from ray_mlops.storage import check_location, is_object_store, join, open_location

if TYPE_CHECKING:
    from ray_mlops.config import LoadedConfig

__all__ = ["Workspace"]


@dataclass(frozen=True)
class Workspace:
    """A project folder, its ``.ray-mlops/``, and where a run's files go.

    Args:
        root: The folder, absolute (see :meth:`for_config`).
        storage: An absolute folder or an object store URI; empty: ``root/.ray-mlops``.
    """

    root: Path
    storage: str = field(default="")

    def __post_init__(self) -> None:
        if not self.storage:
            object.__setattr__(self, "storage", str(self.root / DEFAULT_HOME))

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
            storage=loaded.pipeline.workspace.storage,
        )

    @classmethod
    def here(cls) -> Workspace:
        """The working directory's workspace, for commands that take no config (``models``)."""
        return cls(Path.cwd().resolve())

    @classmethod
    def for_config(
        cls,
        configured: str | None,
        config_dir: Path,
        invoked_from: Path,
        storage: str | None = None,
    ) -> Workspace:
        """The workspace a config names, made at the entry point.

        Args:
            configured: ``workspace.root`` of the config (None: not set).
            config_dir: Folder of the config file; a relative ``workspace.root`` or
                ``workspace.storage`` is taken from it, as relative data paths are.
            invoked_from: Where the command was started (the CLI passes its working
                directory): the workspace when the config names none.
            storage: ``workspace.storage`` of the config (None: ``.ray-mlops`` under the root).

        Raises:
            ConfigError: ``storage`` is a URI of a kind ray-mlops cannot write to.
        """
        if configured is None:
            root = invoked_from.resolve()
        else:
            given = Path(configured).expanduser()
            root = (given if given.is_absolute() else config_dir / given).resolve()
        if storage is None:
            return cls(root)
        if is_object_store(check_location(storage, "workspace.storage")):
            return cls(root, storage.rstrip("/"))
        folder = Path(storage.removeprefix("file://")).expanduser()
        return cls(root, str((folder if folder.is_absolute() else config_dir / folder).resolve()))

    @property
    def home(self) -> Path:
        """``.ray-mlops/`` under the root (not created)."""
        return self.root / DEFAULT_HOME

    def ensure_home(self) -> Path:
        """Create ``.ray-mlops/``, marked ignored by git and Ray Job uploads; its path."""
        return ensure_home(self.root)

    @property
    def is_object_store(self) -> bool:
        """Whether the storage is an object store URI rather than a folder."""
        return is_object_store(self.storage)

    def ensure_storage(self) -> None:
        """Create the storage folder, or check that the object store answers.

        Raises:
            ConfigError: the object store cannot be opened (unknown scheme, bad endpoint).
            OSError: the object store refused the check (no bucket, no permission).
        """
        if not self.is_object_store:
            Path(self.storage).mkdir(parents=True, exist_ok=True)
            return
        filesystem, path = open_location(self.storage)
        filesystem.get_file_info(path)  # reaches the store: a bad endpoint fails here, early

    def tracking_uri(self, configured: str | None) -> str:
        """The config's tracking URI, else ``$MLFLOW_TRACKING_URI``, else the embedded store."""
        return resolve_tracking_uri(configured, self.root)

    @property
    def ray_results(self) -> str:
        """Ray Train and Tune storage (``storage_path``): checkpoints and trial state."""
        return join(self.storage, "ray_results")

    def quarantine_location(self, run_id: str) -> str:
        """Where the rows a run quarantined are written."""
        return join(self.storage, "quarantine", run_id)

    def capture_location(self, configured: str) -> str:
        """``serve.capture.path``: a URI or absolute folder as given, else under the storage."""
        if is_object_store(configured) or Path(configured).expanduser().is_absolute():
            return configured
        return join(self.storage, configured)
