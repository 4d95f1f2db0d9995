"""What one monitored window found: the shape every output of the monitor reads.

The MLflow run, the HTML report, the Prometheus series, the alerts and the retraining policy
all take a :class:`WindowResult`, so they agree on names and values. Ray-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ray_mlops.data.drift import ColumnDrift
from ray_mlops.monitor.estimate import EstimatedPerformance, RealisedPerformance

Signal = Literal["drift", "estimated", "realised", "fairness"]
"""What can breach a limit: input or prediction drift, the estimated or the realised
performance, or a fairness measure of the realised predictions."""

SIGNALS: tuple[Signal, ...] = ("drift", "estimated", "realised", "fairness")


@dataclass(frozen=True)
class Breach:
    """One limit a window broke.

    Attributes:
        signal: Which kind of limit.
        name: The column (drift), metric (estimated, realised) or ``column:measure`` (fairness).
        value: What the window measured.
        limit: The limit from the config, None for drift (decided by the test and distance).
        message: One line naming what, the value and the limit.
    """

    signal: Signal
    name: str
    value: float | None
    limit: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields."""
        return {
            "signal": self.signal,
            "name": self.name,
            "value": self.value,
            "limit": self.limit,
            "message": self.message,
        }


@dataclass(frozen=True)
class WindowResult:
    """The monitor's findings for the traffic of one model in ``[start, end)``.

    Attributes:
        model: Registered model name.
        versions: Model versions that answered in the window, oldest first.
        start: Window start (UTC, inclusive).
        end: Window end (UTC, exclusive).
        rows: Captured records in the window.
        labelled_rows: Of those, records with a joined ground-truth label.
        tested: Whether the window held enough rows (``monitor.min_rows``) to be tested; an
            untested window has no drift results and raises no drift alarm.
        columns: Drift of each input column, after the false-discovery decision.
        predictions: Drift of the model's outputs (class shares, score distribution), decided
            together with the input columns.
        estimated: Performance estimated from the predicted probabilities (classifiers).
        realised: Performance on the labelled rows, None without labels.
        fairness: Sensitive column -> measure -> value, on the labelled rows.
        breaches: Every limit the window broke.
    """

    model: str
    versions: tuple[str, ...]
    start: datetime
    end: datetime
    rows: int
    labelled_rows: int
    tested: bool
    columns: tuple[ColumnDrift, ...] = ()
    predictions: tuple[ColumnDrift, ...] = ()
    estimated: EstimatedPerformance | None = None
    realised: RealisedPerformance | None = None
    fairness: dict[str, dict[str, float | None]] = field(default_factory=dict)
    breaches: tuple[Breach, ...] = ()

    @property
    def drifted_columns(self) -> list[str]:
        """Input columns flagged as drifted, in the order of ``columns``."""
        return [c.column for c in self.columns if c.drifted]

    @property
    def alarmed(self) -> bool:
        """Whether any limit was broken."""
        return bool(self.breaches)

    def signals(self) -> set[Signal]:
        """The kinds of limits broken."""
        return {b.signal for b in self.breaches}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``window.json`` of the monitoring run)."""
        return {
            "model": self.model,
            "versions": list(self.versions),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": self.rows,
            "labelled_rows": self.labelled_rows,
            "tested": self.tested,
            "columns": [c.to_dict() for c in self.columns],
            "predictions": [c.to_dict() for c in self.predictions],
            "estimated": self.estimated.to_dict() if self.estimated else None,
            "realised": self.realised.to_dict() if self.realised else None,
            "fairness": self.fairness,
            "breaches": [b.to_dict() for b in self.breaches],
        }
