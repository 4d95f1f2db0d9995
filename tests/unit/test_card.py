"""The model card says the same in Markdown and HTML, escapes what comes from users and data."""

from __future__ import annotations

import re

import pytest

from ray_mlops.promotion.card import ModelCard, derive_known_limits, render_html, render_markdown

SECTIONS = [
    "Intended use",
    "Data",
    "Metrics",
    "Slices",
    "Fairness",
    "Promotion gate",
    "Lineage",
    "Known limits",
]
EVIL = "<script>alert('x')</script>"


def _card(**changes: object) -> ModelCard:
    card = ModelCard(
        name="adult & co",
        version="7",
        created="2024-05-01T10:00:00+00:00",
        description="Predicts whether income exceeds 50K.",
        intended_use="Teaching the MLOps workflow; not for credit decisions.",
        limitations=["Census data from 1994."],
        data={
            "source": "adult.csv.gz",
            "dataset fingerprint": "fp-9f8e7d",
            "rows": {"train": 24000, "validation": 3000, "test": 3000},
            "schema": {"age": "int64", "workclass": "category"},
        },
        metrics={"roc_auc": 0.912345, "log_loss": 0.3131, "accuracy": float("nan")},
        champion_metrics={"roc_auc": 0.9, "log_loss": 0.33, "f1": 0.7},
        slices=[
            {"name": "sex=Male", "rows": 2000, "roc_auc": 0.93},
            {"name": "sex=Female", "rows": 1000, "roc_auc": 0.88},
            {"name": "race=a|b", "rows": 400, "roc_auc": 0.85},
            {"name": "country=Holand-Netherlands", "rows": 2, "roc_auc": 0.1, "too_small": True},
        ],
        fairness={
            "sex": {
                "demographic_parity_difference": 0.1875,
                "equalized_odds_difference": 0.05,
                "groups": {"Male": {"selection_rate": 0.31}, EVIL: {"selection_rate": 0.12}},
            },
            "race": {
                "demographic_parity_difference": 0.04,
                "equalized_odds_difference": 0.02,
                "groups": {"White": {"selection_rate": 0.25}},
            },
        },
        gate=[
            {
                "rule": "min roc_auc",
                "measured": 0.912345,
                "threshold": 0.85,
                "passed": True,
                "detail": "",
            },
            {
                "rule": "beats champion",
                "measured": 0.012,
                "threshold": 0.0,
                "passed": True,
                "detail": "95% CI lower bound",
            },
            {
                "rule": "max demographic parity difference",
                "measured": 0.1875,
                "threshold": 0.1,
                "passed": False,
                "detail": "over sex",
            },
        ],
        gate_passed=False,
        decision="rejected: the gate failed",
        lineage=[("training run", "run-abc123"), ("dataset fingerprint", "fp-9f8e7d")],
        primary_metric="roc_auc",
    )
    for key, value in changes.items():
        setattr(card, key, value)
    return card


@pytest.mark.parametrize("kind", ["markdown", "html"])
def test_every_section_is_there_with_its_values(kind: str) -> None:
    text = render_markdown(_card()) if kind == "markdown" else render_html(_card())
    for heading in SECTIONS:
        assert (f"## {heading}\n" if kind == "markdown" else f"<h2>{heading}</h2>") in text
    positions = [text.index(f"## {h}" if kind == "markdown" else f"<h2>{h}") for h in SECTIONS]
    assert positions == sorted(positions)
    for value in [
        "Teaching the MLOps workflow; not for credit decisions.",
        "fp-9f8e7d",
        "24,000",
        "int64",
        "0.9123",  # this version's roc_auc, 4 significant digits
        "0.33",  # the champion's log_loss, side by side
        "+0.01234",
        "sex=Female",
        "0.1875",
        "selection_rate",
        "min roc_auc",
        "run-abc123",
        "Census data from 1994.",
        "rejected: the gate failed",
    ]:
        assert value in text, value
    assert "—" in text  # the NaN accuracy and the champion's missing one


def test_html_escapes_every_value() -> None:
    page = render_html(_card())
    assert EVIL not in page and "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "adult &amp; co" in page and "adult & co" not in page


def test_markdown_escapes_pipes_in_table_cells() -> None:
    text = render_markdown(_card())
    assert "race=a\\|b" in text
    # Every row of a table has as many cell borders (unescaped pipes) as its header.
    tables: list[list[int]] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(len(re.findall(r"(?<!\\)\|", line)))
        previous = line
    assert tables and all(len(set(borders)) == 1 for borders in tables)


def test_markdown_keeps_raw_html_out() -> None:
    text = render_markdown(_card())
    assert not re.search(r"(?<!\\)<", text)  # every < is escaped
    assert "\\<script>" in text


def test_gate_rows_say_pass_or_fail_as_the_rules_did() -> None:
    card = _card()
    text = render_markdown(card)
    rows = {}
    for line in text.split("## Promotion gate")[1].split("## Lineage")[0].splitlines():
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        if line.startswith("|") and cells[0] not in ("rule", "---"):
            rows[cells[0]] = cells[3]
    assert rows == {str(rule["rule"]): "PASS" if rule["passed"] else "FAIL" for rule in card.gate}
    assert "Result: FAILED" in text

    page = render_html(card)
    failed = re.findall(r'<tr class="fail"><td>([^<]*)</td>', page)
    passed = re.findall(r'<tr class="pass"><td>([^<]*)</td>', page)
    assert "max demographic parity difference" in failed
    assert passed == ["min roc_auc", "beats champion"]


def test_derived_limits_name_failed_rules_small_slices_and_fairness_gaps() -> None:
    limits = derive_known_limits(_card())
    assert limits[0] == "Census data from 1994."
    text = "\n".join(limits)
    assert "max demographic parity difference" in text
    assert "min roc_auc" not in text
    assert "country=Holand-Netherlands" in text and "sex=Female" not in text
    assert "demographic parity difference over sex is 0.1875" in text
    assert "over race" not in text  # 0.04 and 0.02 are below the threshold
    # The rendered card lists them when none are given.
    assert "country=Holand-Netherlands (2 rows)" in render_markdown(_card())


def test_given_known_limits_are_used_as_they_are() -> None:
    text = render_markdown(_card(known_limits=["Only tested on a laptop."]))
    section = text.split("## Known limits")[1]
    assert section.strip() == "- Only tested on a laptop."


def test_worst_slices_come_first_in_the_metric_direction() -> None:
    slices: list[dict[str, object]] = [
        {"name": f"s{i:02d}", "rows": 100, "rmse": float(i)} for i in range(15)
    ]
    slices.append({"name": "tiny", "rows": 3, "rmse": 99.0, "too_small": True})
    text = render_markdown(_card(slices=slices, primary_metric="rmse"))
    order = re.findall(r"^\| (s\d\d|tiny) \|", text, flags=re.MULTILINE)
    # rmse: higher is worse. The 10 worst first, then the rest (the small slice unranked).
    assert order[:10] == [f"s{i:02d}" for i in range(14, 4, -1)]
    assert order[10:] == ["s00", "s01", "s02", "s03", "s04", "tiny"]

    text = render_markdown(_card())  # roc_auc: lower is worse
    order = re.findall(r"^\| (sex=\w+|race=\S+|country=\S+) \|", text, flags=re.MULTILINE)
    assert order == ["race=a\\|b", "sex=Female", "sex=Male", "country=Holand-Netherlands"]


def test_an_empty_card_still_has_every_section() -> None:
    card = ModelCard(name="m", version="1")
    assert derive_known_limits(card) == []
    for text in (render_markdown(card), render_html(card)):
        for heading in SECTIONS:
            assert heading in text
        assert "Not recorded." in text and "None recorded." in text and "not run" in text


def test_without_champion_metrics_stand_alone() -> None:
    text = render_markdown(_card(champion_metrics=None))
    assert "No champion to compare with." in text
    assert "| roc_auc (primary) | 0.9123 |" in text
    assert "this version" not in text
