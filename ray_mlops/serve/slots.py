"""The model versions a replica holds, one per alias, and the watcher that swaps them.

A replica loads ``models:/<name>@<alias>`` (the champion, and the challenger in canary or
shadow mode) into a :class:`ModelSlot`. A daemon thread asks MLflow every few seconds where
each alias points; when it moved, the new version is downloaded, loaded and warmed up beside
the old one, then swapped in by one reference assignment. A request holds the slot it
started with, so requests in flight finish on the old version and none fails.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ray_mlops.models.predictor import probability_labels
from ray_mlops.serve.schema import InputSchema, records_frame

_log = logging.getLogger(__name__)


@dataclass
class ModelSlot:
    """One loaded model version."""

    alias: str
    version: str
    model: Any
    schema: InputSchema
    example: list[dict[str, Any]]
    labels: list[str] | None
    _workdir: tempfile.TemporaryDirectory[str] = field(repr=False)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The packaged model's prediction frame."""
        return pd.DataFrame(self.model.predict(frame)).reset_index(drop=True)


def load_slot(tracking_uri: str, name: str, alias: str, version: str | None = None) -> ModelSlot:
    """Download and load ``name@alias`` (or a given version of it), warmed up.

    Raises:
        mlflow.exceptions.MlflowException: the model or the alias does not exist.
    """
    from mlflow.tracking import MlflowClient

    from ray_mlops.registry.champion import load_version

    if version is None:
        version = str(MlflowClient(tracking_uri).get_model_version_by_alias(name, alias).version)
    workdir = tempfile.TemporaryDirectory(prefix="ray-mlops-model-")
    model, _ = load_version(tracking_uri, name, version, workdir.name)
    schema = InputSchema.from_signature(model.metadata.get_input_schema())
    example = _example_records(model)
    slot = ModelSlot(alias, version, model, schema, example, None, workdir)
    # Warm up before taking traffic: the first call pays for lazy initialisation.
    if example:
        warm = slot.predict(records_frame({"records": example}, schema, len(example)))
        slot.labels = probability_labels(warm) or None
    return slot


def _example_records(model: Any) -> list[dict[str, Any]]:
    example = model.input_example
    if not isinstance(example, pd.DataFrame):
        return []
    # JSON-ready: ISO strings for times, None for missing values.
    return list(json.loads(example.to_json(orient="records", date_format="iso")))


class AliasWatcher:
    """Polls where the aliases point and swaps in new versions, in a daemon thread."""

    def __init__(
        self,
        tracking_uri: str,
        name: str,
        slots: dict[str, ModelSlot | None],
        interval_s: float,
        on_swap: Callable[[str, str, str], None] | None = None,
        on_poll: Callable[[], None] | None = None,
    ) -> None:
        self._tracking_uri = tracking_uri
        self._name = name
        self.slots = slots
        self._interval_s = interval_s
        self._on_swap = on_swap
        self._on_poll = on_poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alias-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self._tracking_uri)
        while not self._stop.wait(self._interval_s):
            if self._on_poll is not None:
                self._on_poll()
            for alias, current in list(self.slots.items()):
                try:
                    target = str(client.get_model_version_by_alias(self._name, alias).version)
                except Exception as exc:  # the alias was removed, or MLflow is unreachable
                    _log.debug("alias %s@%s not readable: %s", self._name, alias, exc)
                    continue
                if current is not None and current.version == target:
                    continue
                try:
                    fresh = load_slot(self._tracking_uri, self._name, alias, target)
                except Exception as exc:  # keep serving the old version
                    _log.warning(
                        "could not load %s v%s for @%s: %s", self._name, target, alias, exc
                    )
                    continue
                self.slots[alias] = fresh  # one assignment: requests see old or new, whole
                _log.info("@%s now serves %s v%s", alias, self._name, target)
                if self._on_swap is not None:
                    self._on_swap(alias, current.version if current else "", target)

    def stop(self) -> None:
        """Stop polling (the thread ends at its next wake-up)."""
        self._stop.set()


class AliasView(dict[str, "ModelSlot | None"]):
    """The slots by alias name for the watcher, writing through to the slots by role."""

    def __init__(self, slots: dict[str, ModelSlot | None], aliases: dict[str, str]) -> None:
        super().__init__({aliases[role]: slot for role, slot in slots.items()})
        self._slots = slots
        self._roles = {alias: role for role, alias in aliases.items()}

    def __setitem__(self, alias: str, slot: ModelSlot | None) -> None:
        super().__setitem__(alias, slot)
        self._slots[self._roles[alias]] = slot
