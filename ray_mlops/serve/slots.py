"""The model versions a replica holds, one per alias, and the watcher that swaps them.

A replica loads ``models:/<name>@<alias>`` (the champion, and the challenger in canary or
shadow mode) into a :class:`ModelSlot`. A daemon thread asks MLflow every few seconds where
each alias points; when it moved, the new version is downloaded, loaded and warmed up beside
the old one, then swapped in by one reference assignment. A request holds the slot it
started with, so requests in flight finish on the old version and none fails.

Every load is verified first (:func:`ray_mlops.registry.champion.load_version`) against
this process's :class:`~ray_mlops.signing.trust.Trust`, which a replica sets from its
settings (:func:`use_trust`): a refused new version leaves the old one serving, counted in
``ray_mlops_model_signature_failures_total`` and logged with the reason.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from ray_mlops.errors import SignatureError
from ray_mlops.serve.schema import (
    InputSchema,
    RequestRows,
    checked_rows,
    join_columns,
    rows_frame,
)
from ray_mlops.serve.scores import Scores

if TYPE_CHECKING:
    from ray_mlops.signing.trust import Trust

_log = logging.getLogger(__name__)
# What this process's loads trust; a replica sets it from its settings (None: the defaults).
_trust: Trust | None = None


def use_trust(trust: Trust | None) -> None:
    """Verify this process's later loads with ``trust`` (a replica's, from its settings)."""
    global _trust
    _trust = trust


@dataclass
class ModelSlot:
    """One loaded model version.

    ``predictor`` is the packaged model's own predictor when the version was packaged by
    ray-mlops: requests are checked against the signature on arrival (``checked_rows``), so
    the replica calls it directly and skips the pyfunc's per-call schema enforcement (about
    3 ms a call). Other pyfunc models go through ``model.predict``.
    """

    alias: str
    version: str
    model: Any
    schema: InputSchema
    example: list[dict[str, Any]]
    labels: list[str] | None
    _workdir: tempfile.TemporaryDirectory[str] = field(repr=False)
    predictor: Any = None

    def score(self, parts: list[RequestRows]) -> Scores:
        """The answers for the rows of one or more checked requests, in order."""
        if self.predictor is not None:
            predictions, probabilities = self.predictor.predict_arrays(join_columns(parts))
            return Scores(predictions, probabilities, self.predictor.state.labels)
        return Scores.from_frame(pd.DataFrame(self.model.predict(rows_frame(parts))))


def load_slot(
    tracking_uri: str,
    name: str,
    alias: str,
    version: str | None = None,
    device: str | None = None,
) -> ModelSlot:
    """Download and load ``name@alias`` (or a given version of it), warmed up.

    Args:
        device: Where the network runs (``"cuda"`` on a GPU replica); None picks the GPU
            when one is visible to this process, else the CPU.

    Raises:
        mlflow.exceptions.MlflowException: the model or the alias does not exist.
        SignatureError: the version is refused (counted, audited and announced).
    """
    from mlflow.tracking import MlflowClient

    from ray_mlops.registry.champion import load_version

    if version is None:
        version = str(MlflowClient(tracking_uri).get_model_version_by_alias(name, alias).version)
    workdir = tempfile.TemporaryDirectory(prefix="ray-mlops-model-")
    try:
        model, _ = load_version(tracking_uri, name, version, workdir.name, _trust)
    except SignatureError:
        _count_refusal(name, version)
        workdir.cleanup()
        raise
    schema = InputSchema.from_signature(model.metadata.get_input_schema())
    example = _example_records(model)
    predictor = _fast_predictor(model, device)
    slot = ModelSlot(alias, version, model, schema, example, None, workdir, predictor)
    # Warm up before taking traffic: the first call pays for lazy initialisation.
    if example:
        slot.labels = slot.score([checked_rows({"records": example}, schema, len(example))]).labels
    return slot


def _count_refusal(name: str, version: str) -> None:
    """Count a refused version in the replica's Prometheus series (outside Ray: nothing)."""
    try:
        from ray_mlops.serve.telemetry import signature_failures

        signature_failures().inc(1, tags={"model": name, "version": version})
    except Exception as exc:  # no Ray metrics here (a test, a script): the log says it
        _log.debug("signature failure not counted: %s", exc)


def _fast_predictor(model: Any, device: str | None) -> Any:
    """The ray-mlops predictor inside a pyfunc model, on ``device``; None for other models."""
    try:
        inner = model.unwrap_python_model()
    except Exception:  # not a Python-function model (a flavor's own pyfunc)
        return None
    # Versions packaged before ``predictor`` was public hold it as ``_predictor``.
    predictor = getattr(inner, "predictor", None) or getattr(inner, "_predictor", None)
    if predictor is None or not hasattr(predictor, "predict_arrays"):
        return None
    import torch

    target = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return predictor.to(target)


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
        device: str | None = None,
    ) -> None:
        self._tracking_uri = tracking_uri
        self._device = device
        self._name = name
        self.slots = slots
        self._interval_s = interval_s
        self._on_swap = on_swap
        self._on_poll = on_poll
        self._stop = threading.Event()
        # Versions refused by their signature, by alias: not retried (nor re-announced)
        # every poll; a new version under the alias is tried.
        self._refused: dict[str, str] = {}
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
                if self._refused.get(alias) == target:
                    continue
                try:
                    fresh = load_slot(
                        self._tracking_uri, self._name, alias, target, device=self._device
                    )
                except SignatureError as exc:
                    self._refused[alias] = target
                    kept = f"v{current.version}" if current is not None else "nothing"
                    _log.error(
                        "refused %s v%s for @%s, still serving %s: %s",
                        self._name,
                        target,
                        alias,
                        kept,
                        exc,
                    )
                    continue
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
