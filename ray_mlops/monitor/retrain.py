"""Whether monitored windows call for a retrain, and the training set it would use. Ray-free.

The policy is the config's ``monitor.retrain``: a breach of one of its signals, enough
labelled captured rows, and the cool-down since the last retrain. Every decision, yes or no,
carries its reason, and the windows it read, so the monitoring run can record it. The
retrain itself is a pipeline run whose candidate meets the same gate as any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ray_mlops.monitor.result import WindowResult

if TYPE_CHECKING:
    from ray_mlops.config import RetrainConfig


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain now, and why.

    Attributes:
        retrain: The decision.
        reason: One line: what triggered it, or what held it back.
        signals: The policy's signals that the windows breached.
        labelled_rows: Labelled captured rows in the windows since the last retrain.
        windows: ``start/end`` (ISO) of the windows the decision read, oldest first.
    """

    retrain: bool
    reason: str
    signals: tuple[str, ...] = ()
    labelled_rows: int = 0
    windows: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the monitoring run's ``retrain.json``)."""
        return {
            "retrain": self.retrain,
            "reason": self.reason,
            "signals": list(self.signals),
            "labelled_rows": self.labelled_rows,
            "windows": list(self.windows),
        }


def decide_retrain(
    results: Sequence[WindowResult],
    policy: RetrainConfig,
    *,
    now: datetime,
    last_retrain: datetime | None,
) -> RetrainDecision:
    """Apply ``policy`` to the windows ended since the last retrain.

    Args:
        results: Monitored windows, any order; those that ended before ``last_retrain`` are
            left out (their rows are in the model already, or were judged already).
        policy: The ``monitor.retrain`` section.
        now: The time of the decision (UTC).
        last_retrain: When the last retrain started, None when never.

    Returns:
        The decision with its reason.
    """
    recent = sorted(
        (r for r in results if last_retrain is None or r.end > last_retrain), key=lambda r: r.end
    )
    spans = tuple(f"{r.start.isoformat()}/{r.end.isoformat()}" for r in recent)
    # `--every` shorter than the window judges overlapping windows: their labelled rows are
    # counted once, over windows that do not overlap (newest first); a breach in any counts.
    labelled, covered_from = 0, None
    for r in reversed(recent):
        if covered_from is None or r.end <= covered_from:
            labelled += r.labelled_rows
            covered_from = r.start
    breached = sorted({b.signal for r in recent for b in r.breaches} & set(policy.on))

    def verdict(retrain: bool, reason: str) -> RetrainDecision:
        return RetrainDecision(retrain, reason, tuple(breached), labelled, spans)

    if not policy.enabled:
        return verdict(False, "monitor.retrain.enabled is false")
    if not breached:
        return verdict(False, f"no breach of {', '.join(policy.on)} since the last retrain")
    if labelled < policy.min_labelled_rows:
        return verdict(
            False,
            f"{' and '.join(breached)} breached, but {labelled} labelled rows are fewer than "
            f"monitor.retrain.min_labelled_rows ({policy.min_labelled_rows})",
        )
    if last_retrain is not None and now - last_retrain < policy.cooldown:
        return verdict(
            False,
            f"{' and '.join(breached)} breached, but the last retrain started at "
            f"{last_retrain.isoformat()}, within monitor.retrain.cooldown "
            f"({policy.cooldown})",
        )
    return verdict(
        True,
        f"{' and '.join(breached)} breached in {len(recent)} window(s), with {labelled} "
        "labelled rows",
    )
