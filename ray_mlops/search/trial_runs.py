"""Each trial as a nested MLflow run, written by the search's driver as results arrive.

A Tune callback, the way Ray's own ``MLflowLoggerCallback`` works: the trials never import
MLflow or open the tracking store. That keeps about two seconds (MLflow's import and the
first queries) off the start of every trial process, and puts every write to the store in
one process, so concurrent trials cannot collide in it (SQLite allows one writer).

Epochs are buffered and written every ``FLUSH_EVERY_S`` seconds, one ``log_batch`` per trial
with ``synchronous=False`` (MLflow's writer thread stores them while Tune's loop goes on):
a write per epoch kept the driver busy, and every result a trial reports waits for the
driver to take it. A trial's run is found again by its trial id tag, so a resumed search
continues the same runs instead of opening new ones. Tune's own ``result.json`` of each
trial is the record: a resumed trial's run gets the epochs it lacks from it (those still
buffered when the driver was killed), and epochs that the trial trains again from its last
checkpoint are not logged twice.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from ray_mlops.config import Dimension
from ray_mlops.mlflow_names import MLFLOW_PARENT_RUN_ID, TAG_TRIAL_ID, TAG_TRIAL_NODE
from ray_mlops.search.space import trial_values

# Tune's own bookkeeping in every result: kept in Tune's files, not in the trial's run.
_TUNE_KEYS = frozenset(AUTO_RESULT_KEYS) | {"trial_id", "done", "should_checkpoint"}
_PARAM_CHARS = 6000  # MLflow's limit on a param value
_BATCH_METRICS = 900  # below MLflow's 1000 metrics per log_batch
FLUSH_EVERY_S = 2.0


class TrialRuns(Callback):
    """Log every trial of a search under the search's MLflow run.

    Args:
        tracking_uri: The MLflow tracking URI.
        experiment_id: The experiment of the search run.
        search_run_id: The search's run; each trial's run is nested under it.
        space: The search space, to log the trial's values under their config paths.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        search_run_id: str,
        space: dict[str, Dimension],
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.search_run_id = search_run_id
        self.space = space
        self.runs: dict[str, str] = {}  # trial id -> run id
        self.logged: dict[str, int] = {}  # trial id -> last epoch in its run
        self._nodes: dict[str, str] = {}  # trial id -> the node address its run records
        self._client: Any = None
        self._pending: list[Any] = []
        self._buffer: dict[str, list[Any]] = {}  # run id -> metrics not written yet
        self._flushed = time.monotonic()
        self._restored = False  # only a resumed search has runs to find again

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state (a resumed search gets them
        # back): the client and unwritten metrics stay behind (a resumed run reads what
        # its trials' runs hold and logs the rest again).
        return {**self.__dict__, "_client": None, "_pending": [], "_buffer": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled: Tune restored the experiment, so trials may have runs already.
        self.__dict__.update(state, _restored=True, _flushed=time.monotonic())

    @property
    def client(self) -> Any:
        """The MLflow client, made on first use in the driver."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def run_of(self, trial: Any) -> str:
        """The trial's run: the one logged before (a resumed search), else a new one."""
        trial_id = str(trial.trial_id)
        if trial_id in self.runs:
            return self.runs[trial_id]
        found = self._restored and self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.search_run_id}' "
                f"and tags.`{TAG_TRIAL_ID}` = '{trial_id}'"
            ),
            max_results=1,
        )
        if found:
            run_id = str(found[0].info.run_id)
            epochs = self.client.get_metric_history(run_id, "epoch")
            self.logged[trial_id] = int(max((m.value for m in epochs), default=-1))
            self.runs[trial_id] = run_id
            for result in _recorded_results(trial):
                self.on_trial_result(0, [], trial, result)
        else:
            from ray_mlops.tracking import RunHandle

            run = RunHandle.create(
                self.client,
                self.experiment_id,
                str(trial),
                {MLFLOW_PARENT_RUN_ID: self.search_run_id, TAG_TRIAL_ID: trial_id},
            )
            run_id = run.run_id
            values = trial_values(self.space, trial.config)
            run.record_params({k: _text(v) for k, v in sorted(values.items())})
        self.runs[trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.run_of(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        """Queue the epoch's metrics, at the loop's epoch as the step."""
        from mlflow.entities import Metric

        metrics = epoch_metrics(result)
        if not metrics:
            return
        step = int(result.get("epoch", result.get("training_iteration", 1) - 1))
        run_id = self.run_of(trial)
        trial_id = str(trial.trial_id)
        node = str(result.get("node_ip") or "")
        if node and self._nodes.get(trial_id) != node:  # where it runs: once, and on a move
            from ray_mlops.tracking import RunHandle

            RunHandle(self.client, run_id).record_tags({TAG_TRIAL_NODE: node})
            self._nodes[trial_id] = node
        if step <= self.logged.get(trial_id, -1):
            return  # trained again after a restore: the same numbers are in the run already
        self.logged[trial_id] = step
        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in sorted(metrics.items())]
        self._buffer.setdefault(run_id, []).extend(batch)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if time.monotonic() - self._flushed >= FLUSH_EVERY_S:
            self.flush()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.flush()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.flush()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Write what is buffered and wait until it is stored: the stage reads it next."""
        self.flush()
        self.wait()

    def wait(self) -> None:
        """Block until every queued write is stored."""
        for operation in self._pending:
            operation.wait()
        self._pending.clear()

    def flush(self) -> None:
        """Queue one write per trial for the epochs buffered since the last flush."""
        from ray_mlops.tracking import RunHandle

        for run_id, metrics in self._buffer.items():
            run = RunHandle(self.client, run_id)
            for start in range(0, len(metrics), _BATCH_METRICS):
                chunk = metrics[start : start + _BATCH_METRICS]
                operation = run.record_metric_entries(chunk, synchronous=False)
                if operation is not None:
                    self._pending.append(operation)
        self._buffer.clear()
        self._flushed = time.monotonic()


def epoch_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The training loop's numbers in a Tune result, without Tune's bookkeeping."""
    return {
        key: float(value)
        for key, value in result.items()
        if key not in _TUNE_KEYS and isinstance(value, int | float) and not isinstance(value, bool)
    }


def _recorded_results(trial: Any) -> list[dict[str, Any]]:
    """The results in the trial's ``result.json`` (Tune's JSON logger), oldest first."""
    from ray.tune.result import EXPR_RESULT_FILE

    path = Path(trial.local_path or "", EXPR_RESULT_FILE)
    if not trial.local_path or not path.is_file():
        return []
    results = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line cut short by the kill
            results.append(json.loads(line))
    return results


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:_PARAM_CHARS]
