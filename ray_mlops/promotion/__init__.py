"""The promotion decision: whether a candidate takes the champion alias, and its record.

``judge_against_champion`` scores the candidate and the champion on the same frozen holdout
and runs the gate (``run_gate``: rules with a kind, measured values, pass or fail), for the
pipeline and for ``ray-mlops promote`` alike; ``record_candidate`` tags the new version with
the verdict, logs its model card and moves the alias on a pass; ``promote`` and ``rollback``
are the operator's actions. Registry reads and writes go through ``ray_mlops.registry``.
Imported lazily.
"""

from ray_mlops.exports import lazy_exports

__all__ = [
    "AliasDecision",
    "GateResult",
    "Judged",
    "Judgement",
    "ModelCard",
    "PromotionOutcome",
    "RuleKind",
    "RuleResult",
    "ScoredModel",
    "Verdict",
    "decision_of",
    "judge",
    "judge_against_champion",
    "promote",
    "record_candidate",
    "rollback",
    "run_gate",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "AliasDecision": "record",
        "GateResult": "gate",
        "Judged": "judge",
        "Judgement": "record",
        "ModelCard": "card",
        "PromotionOutcome": "operations",
        "RuleKind": "gate",
        "RuleResult": "gate",
        "ScoredModel": "gate",
        "Verdict": "judge",
        "decision_of": "record",
        "judge": "judge",
        "judge_against_champion": "judge",
        "promote": "operations",
        "record_candidate": "record",
        "rollback": "operations",
        "run_gate": "gate",
    },
)
