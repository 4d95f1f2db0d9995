"""CBPE performance estimation against labels drawn from known probabilities. Ray-free.

Labels are drawn from the probabilities the test controls (y ~ Bernoulli(p)), so the model is
calibrated by construction, or miscalibrated by a known map; the realised metrics of the drawn
labels are what the estimate must predict. Tolerances hold for 30 seeds (checked when they
were chosen), not only for the one used here.
"""

import json

import numpy as np
import pytest
from scipy.special import expit, softmax
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

from ray_mlops.errors import DataError
from ray_mlops.evaluate.metrics import classification_metrics, label_indices
from ray_mlops.monitor.estimate import (
    BINARY_METRICS,
    MULTICLASS_METRICS,
    Calibrator,
    estimate_by_group,
    estimate_performance,
    fit_calibrator,
    realised_performance,
)

LABELS = ["no", "yes"]
CLASSES = ["a", "b", "c"]
ROWS = 4000


def _binary(p: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - p, p])


def _draw(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """Labels with P("yes") = p, row by row."""
    return np.where(rng.uniform(size=len(p)) < p, "yes", "no")


def _draw_classes(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One class per row, drawn from the row's probabilities."""
    u = rng.uniform(size=(len(probabilities), 1))
    index = (u > probabilities.cumsum(axis=1)).sum(axis=1)
    return np.array(CLASSES)[np.minimum(index, len(CLASSES) - 1)]


def _concept(x: np.ndarray) -> np.ndarray:
    """P(yes | x): the relation that covariate shift leaves alone."""
    return expit(3.0 * x - 1.0)


def _gap(estimated: dict, realised: dict, metric: str) -> float:
    return abs(estimated[metric] - realised[metric])


def test_calibrated_binary_estimate_is_close_to_the_realised_metrics() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=ROWS)
    y = _draw(rng, p)
    estimated = estimate_performance(_binary(p), LABELS).metrics
    realised = realised_performance(_binary(p), y, LABELS).metrics
    assert set(BINARY_METRICS) == set(estimated) and set(BINARY_METRICS) <= set(realised)
    for metric in ("accuracy", "roc_auc", "f1_macro"):
        assert _gap(estimated, realised, metric) < 0.02, metric
    for metric in ("precision", "recall", "f1"):
        assert _gap(estimated, realised, metric) < 0.03, metric


def test_estimate_tracks_realised_accuracy_under_covariate_shift() -> None:
    # The inputs move (mean 0 -> 1.5, so most rows leave the uncertain region); P(y | x) stays.
    rng = np.random.default_rng(1)
    accuracy: dict[str, float] = {}
    for window, mean in (("reference", 0.0), ("shifted", 1.5)):
        p = _concept(rng.normal(mean, 1.0, ROWS))
        y = _draw(rng, p)
        estimated = estimate_performance(_binary(p), LABELS).metrics
        realised = realised_performance(_binary(p), y, LABELS).metrics
        assert _gap(estimated, realised, "accuracy") < 0.03, window
        assert realised["accuracy"] is not None
        accuracy[window] = realised["accuracy"]
    # The shift changed what there is to estimate (a window that did not would test nothing).
    assert accuracy["shifted"] - accuracy["reference"] > 0.03


def test_miscalibrated_probabilities_need_the_calibrator_also_after_a_shift() -> None:
    rng = np.random.default_rng(2)
    reference_p = _concept(rng.normal(0.0, 1.0, ROWS))
    reference_y = _draw(rng, reference_p)
    # The model serves p**3: right ranking, wrong confidence (too sure of "no").
    calibrator = fit_calibrator(_binary(reference_p**3), label_indices(reference_y, LABELS), LABELS)
    for mean in (0.0, 1.0):
        p = _concept(rng.normal(mean, 1.0, ROWS))
        served = _binary(p**3)
        realised = realised_performance(served, _draw(rng, p), LABELS).metrics
        uncalibrated = estimate_performance(served, LABELS).metrics
        calibrated = estimate_performance(served, LABELS, calibrator=calibrator).metrics
        # Uncalibrated, the estimate misses the 0.03 bar by a wide margin.
        assert _gap(uncalibrated, realised, "accuracy") > 0.04
        for metric in ("accuracy", "roc_auc"):
            assert _gap(calibrated, realised, metric) < 0.02, (mean, metric)
        assert _gap(calibrated, realised, "f1") < 0.03, mean


def test_multiclass_expected_accuracy_macro_f1_and_auc() -> None:
    rng = np.random.default_rng(3)
    p = softmax(rng.normal(size=(ROWS, 3)) * 1.5, axis=1)
    y = _draw_classes(rng, p)
    estimated = estimate_performance(p, CLASSES)
    realised = realised_performance(p, y, CLASSES).metrics
    assert set(estimated.metrics) == set(MULTICLASS_METRICS) <= set(realised)
    assert estimated.positive is None and estimated.expected_confusion is None
    for metric in ("accuracy", "f1_macro", "roc_auc"):
        assert _gap(estimated.metrics, realised, metric) < 0.02, metric


def test_multiclass_calibrator_corrects_an_overconfident_softmax() -> None:
    rng = np.random.default_rng(4)

    def window(rows: int) -> tuple[np.ndarray, np.ndarray]:
        logits = rng.normal(size=(rows, 3)) * 1.5
        # Served with temperature 1/3: the ranking of the true softmax, three times as sure.
        return softmax(3.0 * logits, axis=1), _draw_classes(rng, softmax(logits, axis=1))

    reference, reference_y = window(2 * ROWS)
    calibrator = fit_calibrator(reference, label_indices(reference_y, CLASSES), CLASSES)
    served, y = window(ROWS)
    realised = realised_performance(served, y, CLASSES).metrics
    assert _gap(estimate_performance(served, CLASSES).metrics, realised, "accuracy") > 0.1
    calibrated = estimate_performance(served, CLASSES, calibrator=calibrator).metrics
    assert _gap(calibrated, realised, "accuracy") < 0.03
    assert _gap(calibrated, realised, "f1_macro") < 0.03
    np.testing.assert_allclose(calibrator.apply(served).sum(axis=1), 1.0)


def test_expected_counts_are_sums_of_probabilities() -> None:
    p = np.array([0.9, 0.7, 0.4, 0.2])
    estimate = estimate_performance(_binary(p), LABELS)
    # Rows 0 and 1 are predicted "yes": TP = 0.9 + 0.7, FP = 0.1 + 0.3; FN and TN likewise.
    assert estimate.expected_confusion == pytest.approx(
        {"tp": 1.6, "fp": 0.4, "fn": 0.6, "tn": 1.4}
    )
    # sklearn on the label distribution: each row a "yes" of weight p and a "no" of 1 - p.
    truth = np.repeat([1, 0], len(p))
    decision = np.tile((p > 0.5).astype(int), 2)
    weight = np.concatenate([p, 1.0 - p])
    expected = {
        "accuracy": skm.accuracy_score(truth, decision, sample_weight=weight),
        "precision": skm.precision_score(truth, decision, sample_weight=weight),
        "recall": skm.recall_score(truth, decision, sample_weight=weight),
        "f1": skm.f1_score(truth, decision, sample_weight=weight),
        "f1_macro": skm.f1_score(truth, decision, sample_weight=weight, average="macro"),
    }
    for metric, value in expected.items():
        assert estimate.metrics[metric] == pytest.approx(value), metric
    assert estimate.metrics["accuracy"] == pytest.approx(0.75)


def test_expected_roc_auc_is_the_weighted_roc_of_the_label_distribution() -> None:
    # NannyML's curve (each row a fractional positive at its own score) is sklearn's ROC of
    # the label distribution; scores are rounded so that ties occur, and the calibrated
    # probabilities differ from the scores, so the ranking must come from the scores.
    rng = np.random.default_rng(5)
    score = np.round(rng.uniform(size=500), 2)
    reference_y = _draw(rng, score**2)
    calibrator = fit_calibrator(_binary(score), label_indices(reference_y, LABELS), LABELS)
    chance = calibrator.apply(_binary(score))[:, 1]
    got = estimate_performance(_binary(score), LABELS, calibrator=calibrator).metrics["roc_auc"]
    expected = skm.roc_auc_score(
        np.repeat([1, 0], len(score)),
        np.tile(score, 2),
        sample_weight=np.concatenate([chance, 1.0 - chance]),
    )
    assert got == pytest.approx(expected)


def test_multiclass_expected_roc_auc_is_one_vs_rest_of_the_label_distribution() -> None:
    # Renormalised calibration makes a class's probability depend on the whole row, so rows
    # that tie on a class's score can differ in its calibrated probability: the curve must
    # rank by the served score and take tied rows together (as sklearn does).
    rng = np.random.default_rng(12)
    # Few distinct values per column, in rows that differ elsewhere: ties everywhere.
    first = rng.choice([0.2, 0.4, 0.6], 600)
    second = (1.0 - first) * rng.choice([0.25, 0.5, 0.75], 600)
    served = np.column_stack([first, second, 1.0 - first - second])
    reference_y = _draw_classes(rng, softmax(rng.normal(size=(600, 3)), axis=1))
    calibrator = fit_calibrator(served, label_indices(reference_y, CLASSES), CLASSES)
    chance = calibrator.apply(served)
    got = estimate_performance(served, CLASSES, calibrator=calibrator).metrics["roc_auc"]
    expected = skm.roc_auc_score(
        np.tile(np.arange(3), len(served)),
        np.repeat(served, 3, axis=0),
        sample_weight=chance.ravel(),
        multi_class="ovr",
        labels=range(3),
    )
    assert got == pytest.approx(expected)


def test_certain_probabilities_give_the_realised_metrics_exactly() -> None:
    p = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
    y = np.where(p == 1.0, "yes", "no")
    estimated = estimate_performance(_binary(p), LABELS).metrics
    realised = realised_performance(_binary(p), y, LABELS).metrics
    for metric in BINARY_METRICS:
        assert estimated[metric] == pytest.approx(realised[metric]), metric


def test_threshold_and_positive_class() -> None:
    rng = np.random.default_rng(6)
    p = rng.uniform(size=200)
    everything_positive = estimate_performance(_binary(p), LABELS, threshold=0.0)
    assert everything_positive.metrics["recall"] == pytest.approx(1.0)
    assert everything_positive.metrics["precision"] == pytest.approx(p.mean())
    # "no" as the positive class is "yes" as positive with the columns swapped.
    as_no = estimate_performance(_binary(p), LABELS, positive="no")
    swapped = estimate_performance(_binary(p)[:, ::-1], ["yes", "no"])
    assert as_no.positive == "no"
    assert as_no.metrics == pytest.approx(swapped.metrics)
    y = _draw(rng, p)
    realised_no = realised_performance(_binary(p), y, LABELS, positive="no").metrics
    predicted = np.where(p > 0.5, "yes", "no")
    assert realised_no["precision"] == pytest.approx(
        skm.precision_score(y, predicted, pos_label="no")
    )


def test_calibrator_is_isotonic_regression_per_class() -> None:
    rng = np.random.default_rng(7)
    score = rng.uniform(0.2, 0.8, 300)
    y = _draw(rng, score)
    calibrator = fit_calibrator(_binary(score), label_indices(y, LABELS), LABELS)
    # New scores inside and outside the reference's range (clipped to its ends).
    new = np.concatenate([rng.uniform(size=100), [0.0, 1.0]])
    isotonic = IsotonicRegression(out_of_bounds="clip").fit(score, y == "yes")
    calibrated = calibrator.apply(_binary(new))
    np.testing.assert_allclose(calibrated[:, 1], isotonic.predict(new))
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)


@pytest.mark.parametrize("labels", [LABELS, CLASSES])
def test_calibrator_round_trips_through_json(labels: list[str]) -> None:
    rng = np.random.default_rng(8)
    p = softmax(rng.normal(size=(500, len(labels))), axis=1)
    y = rng.integers(0, len(labels), 500)
    calibrator = fit_calibrator(p, y, labels)
    stored = json.loads(json.dumps(calibrator.to_dict(), allow_nan=False))
    restored = Calibrator.from_dict(stored)
    assert restored.labels == tuple(labels)
    new = softmax(rng.normal(size=(200, len(labels))), axis=1)
    assert np.array_equal(restored.apply(new), calibrator.apply(new))


def test_calibrator_from_dict_rejects_a_malformed_form() -> None:
    good = fit_calibrator(_binary(np.array([0.2, 0.8])), np.array([0, 1]), LABELS).to_dict()
    with pytest.raises(DataError, match="method"):
        Calibrator.from_dict({**good, "method": "platt"})
    with pytest.raises(DataError, match="expected 3"):
        Calibrator.from_dict({**good, "labels": CLASSES})
    with pytest.raises(DataError, match="increasing"):
        Calibrator.from_dict({**good, "classes": [{"label": "yes", "x": [0.5, 0.1], "y": [0, 1]}]})
    with pytest.raises(DataError, match="malformed"):
        Calibrator.from_dict({"method": "isotonic"})


def test_realised_metrics_are_classification_metrics() -> None:
    rng = np.random.default_rng(9)
    for labels in (LABELS, CLASSES):
        p = softmax(rng.normal(size=(300, len(labels))), axis=1)
        y = np.array(labels)[rng.integers(0, len(labels), 300)]
        realised = realised_performance(p, y, labels)
        assert realised.n_labelled == 300
        assert realised.metrics == classification_metrics(y, p, labels)


def test_empty_window_gives_every_metric_none() -> None:
    for labels, names in ((LABELS, BINARY_METRICS), (CLASSES, MULTICLASS_METRICS)):
        empty = np.empty((0, len(labels)))
        estimate = estimate_performance(empty, labels)
        assert estimate.n_rows == 0 and estimate.metrics == dict.fromkeys(names)
        realised = realised_performance(empty, np.array([], dtype=object), labels)
        assert realised.n_labelled == 0 and realised.metrics == dict.fromkeys(names)
        json.dumps([estimate.to_dict(), realised.to_dict()], allow_nan=False)


def test_window_of_a_single_class() -> None:
    rng = np.random.default_rng(10)
    sure_yes = rng.uniform(0.6, 1.0, 50)
    estimate = estimate_performance(_binary(sure_yes), LABELS)
    # Every row predicted "yes": nothing can be a false negative.
    assert estimate.expected_confusion is not None
    assert estimate.expected_confusion["fn"] == 0.0 and estimate.expected_confusion["tn"] == 0.0
    assert estimate.metrics["recall"] == 1.0
    assert estimate.metrics["precision"] == pytest.approx(sure_yes.mean())
    # Certain "no" everywhere: no expected positive, so no ROC curve and nothing recalled.
    certain_no = estimate_performance(_binary(np.zeros(20)), LABELS)
    assert certain_no.metrics["roc_auc"] is None
    assert certain_no.metrics["recall"] == 0.0 and certain_no.metrics["accuracy"] == 1.0
    # Labels of one class: the realised ROC AUC is undefined, and None rather than missing.
    realised = realised_performance(_binary(sure_yes), np.full(50, "yes"), LABELS)
    assert realised.metrics["roc_auc"] is None
    assert realised.to_dict()["metrics"]["accuracy"] == 1.0


def test_estimate_by_group_splits_the_window_as_fairness_names_groups() -> None:
    rng = np.random.default_rng(11)
    p = rng.uniform(size=300)
    groups = np.array(["f", "m", None], dtype=object)[rng.integers(0, 3, 300)]
    by_group = estimate_by_group(_binary(p), LABELS, groups)
    assert list(by_group) == ["(missing)", "f", "m"]
    assert sum(e.n_rows for e in by_group.values()) == 300
    women = estimate_performance(_binary(p[groups == "f"]), LABELS)
    assert by_group["f"].metrics == women.metrics


def test_bad_input_raises_data_error() -> None:
    p = _binary(np.array([0.2, 0.9]))
    with pytest.raises(DataError, match=r"shape \(2, 2\), expected \(n, 3\)"):
        estimate_performance(p, CLASSES)
    with pytest.raises(DataError, match="1 of 2 rows"):
        estimate_performance(np.array([[0.5, 0.5], [np.nan, 0.5]]), LABELS)
    with pytest.raises(DataError, match="1 of 2 rows"):
        estimate_performance(np.array([[0.5, 0.5], [0.7, 0.7]]), LABELS)
    with pytest.raises(DataError, match="'maybe'"):
        estimate_performance(p, LABELS, positive="maybe")
    with pytest.raises(DataError, match="threshold"):
        estimate_performance(p, LABELS, threshold=1.5)
    other = fit_calibrator(p, np.array([0, 1]), ["off", "on"])
    with pytest.raises(DataError, match="fitted for labels"):
        estimate_performance(p, LABELS, calibrator=other)
    with pytest.raises(DataError, match="1 labels for 2 rows"):
        realised_performance(p, np.array(["yes"]), LABELS)
    with pytest.raises(DataError, match="no rows"):
        fit_calibrator(np.empty((0, 2)), np.array([]), LABELS)
    with pytest.raises(DataError, match="group values"):
        estimate_by_group(p, LABELS, ["f"])
