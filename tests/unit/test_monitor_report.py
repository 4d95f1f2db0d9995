"""The HTML page of a monitored window: verdict, drift, distributions, trends. Ray-free.

Synthetic traffic from a known model (P(yes) = logistic(2 x)), as in test_monitor_window: a
window with the numeric input shifted by one standard deviation must be named drifted, with its
breach, on a page that escapes a hostile column name and draws the same bytes twice.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from ray_mlops.monitor import report
from ray_mlops.monitor.result import WindowResult
from ray_mlops.monitor.window import Limits, Reference, Window, evaluate_window
from ray_mlops.reports import esc

LABELS = ["no", "yes"]
START = datetime(2026, 12, 5, 10, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
# A column name that would open a tag and an entity if it reached the page unescaped.
HOSTILE = "<b>colour & shade"
MIX = {"a": 0.5, "b": 0.3, "c": 0.2}
LIMITS = Limits(
    min_distance={"wasserstein_normalised": 0.1, "jensen_shannon": 0.1},
    minimums={"accuracy": 0.99},
)


def _frame(seed: int, n: int, shift: float = 0.0, mix: dict[str, float] = MIX) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    p_yes = 1 / (1 + np.exp(-2 * x))
    return pd.DataFrame(
        {
            "x": x,
            HOSTILE: rng.choice(list(mix), n, p=list(mix.values())),
            "prediction": np.where(p_yes >= 0.5, "yes", "no"),
            "probability_no": 1 - p_yes,
            "probability_yes": p_yes,
            "label": np.where(rng.random(n) < p_yes, "yes", "no"),
        }
    )


@pytest.fixture(scope="module")
def reference() -> Reference:
    train = _frame(0, 3000)
    return Reference(
        numeric={"x": train["x"].to_numpy()},
        categorical={HOSTILE: dict(train[HOSTILE].value_counts())},
        bounds={"x": (-6.0, 6.0)},
        labels=LABELS,
        prediction_counts=dict(train["prediction"].value_counts()),
        scores=train[["probability_no", "probability_yes"]].to_numpy(),
        positive="yes",
    )


def _window(seed: int, hour: int, n: int = 1000, **drift: object) -> Window:
    start = START + hour * HOUR
    return Window("churn", start, start + HOUR, _frame(seed, n, **drift), ("3",))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def shifted(reference: Reference) -> tuple[Window, WindowResult, WindowResult]:
    """The window under report (x shifted by one sd) and the stable window before it."""
    window = _window(2, hour=1, shift=1.0)
    earlier = evaluate_window(_window(1, hour=0), reference, LIMITS)
    return window, evaluate_window(window, reference, LIMITS), earlier


@pytest.fixture(scope="module")
def page(reference: Reference, shifted: tuple[Window, WindowResult, WindowResult]) -> str:
    window, result, earlier = shifted
    return report.render_window_report(result, reference, window, [earlier], limits=LIMITS)


def _images(html: str) -> int:
    return len(re.findall(r'<img src="data:image/png;base64,', html))


def test_the_page_names_the_drifted_column_and_its_breach(
    page: str, shifted: tuple[Window, WindowResult, WindowResult]
) -> None:
    _, result, _ = shifted
    assert result.drifted_columns == ["x"]
    drift = [b for b in result.breaches if b.signal == "drift" and b.name == "x"]
    assert drift and esc(drift[0].message) in page
    # Its row in the drift table is marked failed; the stable column's is not.
    assert '<tr class="fail"><td>x</td><td>numeric</td>' in page
    assert f"<tr><td>{esc(HOSTILE)}</td><td>categorical</td>" in page
    # Limits broken and kept are both shown: accuracy is held to 0.99 and breaks it.
    assert "<td>accuracy</td>" in page and "≥ 0.99" in page
    assert f"{len(result.breaches)} limits broken" in page


def test_a_hostile_column_name_is_escaped(page: str) -> None:
    assert HOSTILE not in page and "<b>" not in page
    assert esc(HOSTILE) in page
    assert f'alt="reference and current distribution of {esc(HOSTILE)}"' in page


def test_one_plot_per_column_and_output_and_the_trends_with_history(
    page: str, reference: Reference, shifted: tuple[Window, WindowResult, WindowResult]
) -> None:
    window, result, _ = shifted
    assert result.estimated is not None
    columns, outputs = 2, 2  # x and the hostile column; P(yes) and the predicted classes
    trends = 2 + len(result.estimated.metrics)  # drift share, rows, one per estimated metric
    assert _images(page) == columns + outputs + trends
    alone = report.render_window_report(result, reference, window)
    assert _images(alone) == columns + outputs
    assert "Only this window so far" in alone


def test_the_drifted_column_is_drawn_first_and_always(
    reference: Reference,
    shifted: tuple[Window, WindowResult, WindowResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window, result, _ = shifted
    monkeypatch.setattr(report, "MAX_COLUMN_PLOTS", 0)
    html = report.render_window_report(result, reference, window)
    assert "1 of 2 columns drawn" in html and "1 left out" in html
    assert 'alt="reference and current distribution of x"' in html
    assert f"distribution of {esc(HOSTILE)}" not in html
    # A drifted column wins over a larger distance that did not drift.
    x, hostile = sorted(result.columns, key=lambda c: c.column != "x")
    assert x.distance is not None and hostile.distance is not None and x.distance > hostile.distance
    swapped = replace(result, columns=(replace(x, drifted=False), replace(hostile, drifted=True)))
    html = report.render_window_report(swapped, reference, window)
    assert f'alt="reference and current distribution of {esc(HOSTILE)}"' in html
    assert 'alt="reference and current distribution of x"' not in html


def test_the_category_bars_agree_with_the_drift_result(reference: Reference) -> None:
    window = _window(3, hour=2, mix={"a": 0.4, "b": 0.2, "c": 0.1, "violet": 0.3})
    result = evaluate_window(window, reference, LIMITS)
    drift = next(c for c in result.columns if c.column == HOSTILE)
    labels, ref, cur = report._category_shares(
        reference.categorical[HOSTILE], 0, window.frame[HOSTILE]
    )
    assert labels[-1] == "<unseen>" and ref[-1] == 0.0
    assert cur[-1] == pytest.approx(drift.unseen_share)
    assert ref.sum() == pytest.approx(1.0) and cur.sum() == pytest.approx(1.0)
    # A reference that lists only its top categories pools the rest with the window's others.
    labels, ref, cur = report._category_shares({"a": 50, "b": 30}, 20, window.frame[HOSTILE])
    assert labels == ["a", "b", "<other>"] and ref[-1] == pytest.approx(0.2)
    assert cur[-1] == pytest.approx(float(window.frame[HOSTILE].isin(["c", "violet"]).mean()))


def test_fairness_per_sensitive_column_and_a_window_without_labels(reference: Reference) -> None:
    window = _window(5, hour=2)
    frame = window.frame
    # Group "g1" gets every positive decision, "g2" none: demographic parity difference 1.
    frame["group"] = np.where(frame["prediction"] == "yes", "g1", "g2")
    limits = Limits(min_distance=LIMITS.min_distance, max_demographic_parity_difference=0.2)
    result = evaluate_window(window, reference, limits, sensitive=["group"])
    html = report.render_window_report(result, reference, window, limits=limits)
    assert (
        '<tr class="fail"><td>group</td><td>demographic_parity_difference</td><td>1</td>'
        "<td>≤ 0.2</td></tr>" in html
    )
    frame["label"] = None
    unlabelled = evaluate_window(window, reference, limits)
    html = report.render_window_report(unlabelled, reference, window, limits=limits)
    assert unlabelled.realised is None
    assert "no labels joined yet" in html and "Fairness" not in html


def test_a_regressor_with_an_all_missing_and_a_constant_column(reference: Reference) -> None:
    train = _frame(0, 3000)
    regressor = Reference(
        numeric={"x": train["x"].to_numpy(), "flat": np.full(3000, 2.0)},
        categorical=reference.categorical,
        scores=train["probability_yes"].to_numpy(),
    )
    window = _window(6, hour=2)
    frame = window.frame.assign(x=np.nan, flat=2.0, prediction=window.frame["probability_yes"])
    window = Window("churn", window.start, window.end, frame)
    result = evaluate_window(window, regressor, LIMITS)
    html = report.render_window_report(result, regressor, window)
    # The empty column is listed as untested (grey) and still drawn, from its reference alone.
    assert '<tr class="small"><td>x</td><td>numeric</td><td>ks</td><td>—</td>' in html
    assert "<td>100.0%</td>" in html
    assert _images(html) == 3 + 1  # x, flat, the hostile column; the predicted values
    assert 'alt="reference and current distribution of predicted value"' in html


def test_an_untested_window_says_why_without_plots(reference: Reference) -> None:
    window = _window(4, hour=3, n=50, shift=3.0)
    result = evaluate_window(window, reference, LIMITS)
    html = report.render_window_report(result, reference, window, limits=LIMITS)
    assert not result.tested and _images(html) == 0
    assert "50 records, fewer than monitor.min_rows (200)" in html
    empty = Window("churn", START, START + HOUR, window.frame.iloc[:0])
    quiet = evaluate_window(empty, reference, LIMITS)
    assert "no traffic in the window" in report.render_window_report(quiet, reference, empty)


def test_the_same_inputs_render_the_same_bytes(
    page: str, reference: Reference, shifted: tuple[Window, WindowResult, WindowResult]
) -> None:
    window, result, earlier = shifted
    again = report.render_window_report(result, reference, window, [earlier], limits=LIMITS)
    assert again == page
