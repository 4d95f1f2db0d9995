"""Evaluation analysis on the holdout: metrics, slices, fairness, importance, report.

Every expected value is computed here independently (scikit-learn or by hand) from the same
synthetic predictions; nothing needs Ray or MLflow.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from ray_mlops.evaluate.fairness import fairness_metrics
from ray_mlops.evaluate.importance import permutation_importance
from ray_mlops.evaluate.metrics import (
    LOWER_IS_BETTER,
    classification_metrics,
    higher_is_better,
    per_class_metrics,
    regression_metrics,
)
from ray_mlops.evaluate.report import evaluate_holdout
from ray_mlops.evaluate.slices import slice_metrics

BINARY = ["no", "yes"]
CLASSES = ["cat", "dog", "eel"]
EVIL = "<script>alert(1)</script>"


def _close(value: float) -> object:
    return pytest.approx(value, rel=1e-12, abs=1e-12)


def _frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sex": rng.choice(np.array(["Female", "Male", EVIL, None], dtype=object), n),
            "age": rng.integers(17, 91, n),
            "income": rng.lognormal(10, 1, n),
            "signal": rng.normal(size=n),
            "noise": rng.normal(size=n),
        }
    )


def _binary(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Holdout, prediction frame, and the positive-class probability."""
    rng = np.random.default_rng(seed)
    holdout = _frame(rng, n)
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.35 * y + rng.uniform(0, 0.65, n), 0, 1)
    holdout["target"] = np.array(BINARY)[y]
    predictions = pd.DataFrame(
        {
            "prediction": np.array(BINARY)[(p1 > 0.5).astype(int)],
            "probability_no": 1 - p1,
            "probability_yes": p1,
        }
    )
    return holdout, predictions, p1


def _multiclass(n: int = 600, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    holdout = _frame(rng, n)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    holdout["target"] = np.array(CLASSES)[y]
    predictions = pd.DataFrame({"prediction": np.array(CLASSES)[proba.argmax(1)]})
    for k, label in enumerate(CLASSES):
        predictions[f"probability_{label}"] = proba[:, k]
    return holdout, predictions, proba


def _regression(n: int = 500, seed: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    holdout = _frame(rng, n)
    holdout["target"] = 10 + 3 * holdout["signal"] + rng.normal(size=n)
    predictions = pd.DataFrame({"prediction": 10 + 2.5 * holdout["signal"].to_numpy()})
    return holdout, predictions


# --- metrics ---------------------------------------------------------------------------------


def test_binary_metrics_match_scikit_learn() -> None:
    holdout, predictions, p1 = _binary()
    y = (holdout["target"] == "yes").to_numpy().astype(int)
    proba = predictions[["probability_no", "probability_yes"]].to_numpy()
    pred = proba.argmax(axis=1)
    got = classification_metrics(holdout["target"].to_numpy(), proba, BINARY)

    assert got["accuracy"] == _close(skm.accuracy_score(y, pred))
    assert got["precision"] == _close(skm.precision_score(y, pred))
    assert got["recall"] == _close(skm.recall_score(y, pred))
    assert got["f1"] == _close(skm.f1_score(y, pred))
    assert got["f1_macro"] == _close(skm.f1_score(y, pred, average="macro"))
    assert got["roc_auc"] == _close(skm.roc_auc_score(y, p1))
    assert got["pr_auc"] == _close(skm.average_precision_score(y, p1))
    assert got["log_loss"] == _close(skm.log_loss(y, proba))
    assert got["brier"] == _close(skm.brier_score_loss(y, p1))
    # Expected calibration error by hand: 10 bins [0, .1), ..., [.9, 1], weighted by rows.
    ece = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        members = (p1 >= lo) & ((p1 < hi) if b < 9 else (p1 <= hi))
        if members.any():
            ece += abs(y[members].mean() - p1[members].mean()) * members.sum() / len(y)
    assert got["calibration_error"] == _close(ece)
    assert 0 < ece < 1


def test_binary_per_class_match_scikit_learn() -> None:
    holdout, predictions, _ = _binary()
    y = holdout["target"].to_numpy()
    proba = predictions[["probability_no", "probability_yes"]].to_numpy()
    got = per_class_metrics(y, proba, BINARY)
    p, r, f, s = skm.precision_recall_fscore_support(
        y, np.array(BINARY)[proba.argmax(1)], labels=BINARY
    )
    for i, label in enumerate(BINARY):
        assert got[label] == {
            "precision": _close(p[i]),
            "recall": _close(r[i]),
            "f1": _close(f[i]),
            "support": s[i],
        }


def test_multiclass_metrics_and_per_class_match_scikit_learn() -> None:
    holdout, _, proba = _multiclass()
    y_text = holdout["target"].to_numpy()
    y = np.array([CLASSES.index(v) for v in y_text])
    pred = proba.argmax(axis=1)
    got = classification_metrics(y_text, proba, CLASSES)

    assert got["accuracy"] == _close(skm.accuracy_score(y, pred))
    assert got["f1_macro"] == _close(skm.f1_score(y, pred, average="macro"))
    assert got["f1_weighted"] == _close(skm.f1_score(y, pred, average="weighted"))
    assert got["precision_macro"] == _close(skm.precision_score(y, pred, average="macro"))
    assert got["recall_macro"] == _close(skm.recall_score(y, pred, average="macro"))
    assert got["roc_auc"] == _close(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert got["log_loss"] == _close(skm.log_loss(y, proba))
    assert "brier" not in got and "f1" not in got

    per_class = per_class_metrics(y_text, proba, CLASSES)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred)
    assert list(per_class) == CLASSES
    for i, label in enumerate(CLASSES):
        assert per_class[label]["precision"] == _close(p[i])
        assert per_class[label]["recall"] == _close(r[i])
        assert per_class[label]["f1"] == _close(f[i])
        assert per_class[label]["support"] == s[i]


def test_regression_metrics_match_scikit_learn() -> None:
    holdout, predictions = _regression()
    y, pred = holdout["target"].to_numpy(), predictions["prediction"].to_numpy()
    got = regression_metrics(y, pred)
    assert got["rmse"] == _close(np.sqrt(skm.mean_squared_error(y, pred)))
    assert got["mae"] == _close(skm.mean_absolute_error(y, pred))
    assert got["r2"] == _close(skm.r2_score(y, pred))
    assert got["wmape"] == _close(np.abs(y - pred).sum() / np.abs(y).sum())
    assert "mape" not in got


def test_unseen_labels_are_errors_and_direction_of_new_metrics() -> None:
    y = np.array(["no", "yes", "maybe", "maybe"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    got = classification_metrics(y, proba, BINARY)
    assert got["accuracy"] == 0.5  # the two "maybe" rows are wrong whatever was predicted
    assert got["precision"] == 0.5  # "maybe" predicted "yes" is a false positive
    assert got["log_loss"] == _close(skm.log_loss([0, 1], proba[:2]))  # known rows only
    for metric in ("log_loss", "brier", "calibration_error", "rmse", "mae", "wmape"):
        assert metric in LOWER_IS_BETTER and not higher_is_better(metric)
    assert higher_is_better("pr_auc") and higher_is_better("f1_weighted")


def test_metrics_undefined_on_one_class_are_left_out() -> None:
    proba = np.array([[0.9, 0.1], [0.4, 0.6]])
    got = classification_metrics(np.array(["no", "no"]), proba, BINARY)
    assert "roc_auc" not in got and "pr_auc" not in got
    assert got["accuracy"] == 0.5 and got["brier"] == _close(
        skm.brier_score_loss([0, 0], proba[:, 1], pos_label=1)
    )
    three = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])
    assert "roc_auc" not in classification_metrics(np.array(["cat", "dog"]), three, CLASSES)


# --- slices ----------------------------------------------------------------------------------


def test_categorical_and_numeric_slices_count_rows_and_match_subset_metrics() -> None:
    holdout, predictions, p1 = _binary()
    holdout.index = holdout.index * 7 + 3  # slices go by position, not by index label
    results = slice_metrics(
        holdout,
        "target",
        predictions,
        "classification",
        BINARY,
        categorical=["sex"],
        numeric=["age"],
        defined={},
        numeric_buckets=4,
        min_rows=30,
    )
    by_name = {r.name: r for r in results}
    sex = holdout["sex"].fillna("(missing)")
    for value, count in sex.value_counts().items():
        result = by_name[f"sex={value}"]
        assert result.rows == count and result.column == "sex" and not result.too_small
        rows = (sex == value).to_numpy()
        y = (holdout["target"].to_numpy()[rows] == "yes").astype(int)
        assert result.metrics["roc_auc"] == _close(skm.roc_auc_score(y, p1[rows]))
        assert result.metrics["accuracy"] == _close(skm.accuracy_score(y, p1[rows] > 0.5))
        proba = predictions[["probability_no", "probability_yes"]].to_numpy()[rows]
        assert result.metrics == classification_metrics(
            holdout["target"].to_numpy()[rows], proba, BINARY
        )

    age = holdout["age"].to_numpy()
    edges = np.unique(np.quantile(age, [0, 0.25, 0.5, 0.75, 1]))
    buckets = [r for r in results if r.column == "age"]
    assert len(buckets) == len(edges) - 1
    for b, result in enumerate(buckets):
        lo, hi = edges[b], edges[b + 1]
        last = b == len(edges) - 2
        rows = (age >= lo) & ((age <= hi) if last else (age < hi))
        assert result.name == f"age in [{lo:g}, {hi:g}{']' if last else ')'}"
        assert result.rows == rows.sum()
        y = (holdout["target"].to_numpy()[rows] == "yes").astype(int)
        assert result.metrics["roc_auc"] == _close(skm.roc_auc_score(y, p1[rows]))
    assert sum(r.rows for r in buckets) == len(holdout)


def test_small_slices_have_a_count_but_no_metrics() -> None:
    holdout, predictions, _ = _binary(n=100)
    results = slice_metrics(
        holdout,
        "target",
        predictions,
        "classification",
        BINARY,
        categorical=["sex"],
        numeric=[],
        defined={},
        min_rows=1000,
    )
    assert all(r.too_small and r.metrics == {} for r in results)
    assert sum(r.rows for r in results) == 100


def test_defined_slice_and_a_bad_query() -> None:
    holdout, predictions, p1 = _binary()
    (young,) = slice_metrics(
        holdout,
        "target",
        predictions,
        "classification",
        BINARY,
        categorical=[],
        numeric=[],
        defined={"young women": "age < 45 and sex == 'Female'"},
    )
    rows = ((holdout["age"] < 45) & (holdout["sex"] == "Female")).to_numpy()
    assert young.name == "young women" and young.column is None and young.rows == rows.sum()
    assert not young.too_small
    y = (holdout["target"].to_numpy()[rows] == "yes").astype(int)
    assert young.metrics["roc_auc"] == _close(skm.roc_auc_score(y, p1[rows]))

    for expression in ("age <<< 3", "no_such_column > 1"):
        with pytest.raises(ValueError, match="broken slice") as error:
            slice_metrics(
                holdout,
                "target",
                predictions,
                "classification",
                BINARY,
                categorical=[],
                numeric=[],
                defined={"broken slice": expression},
            )
        assert expression in str(error.value)


def test_slice_of_one_class_and_regression_slices_do_not_crash() -> None:
    holdout, predictions, _ = _binary()
    (only_yes,) = slice_metrics(
        holdout,
        "target",
        predictions,
        "classification",
        BINARY,
        categorical=[],
        numeric=[],
        defined={"positives": "target == 'yes'"},
    )
    assert "roc_auc" not in only_yes.metrics and "accuracy" in only_yes.metrics

    reg, reg_predictions = _regression()
    results = slice_metrics(
        reg,
        "target",
        reg_predictions,
        "regression",
        None,
        categorical=["sex"],
        numeric=["income"],
        defined={},
        numeric_buckets=3,
    )
    first = results[0]
    rows = (reg["sex"].fillna("(missing)") == first.name.removeprefix("sex=")).to_numpy()
    y, pred = reg["target"].to_numpy()[rows], reg_predictions["prediction"].to_numpy()[rows]
    assert first.metrics == regression_metrics(y, pred)
    assert len([r for r in results if r.column == "income"]) == 3


# --- fairness --------------------------------------------------------------------------------


def test_binary_fairness_matches_hand_computed_rates() -> None:
    holdout, predictions, p1 = _binary()
    ((column, result),) = fairness_metrics(
        holdout, "target", predictions, "classification", BINARY, ["sex"]
    ).items()
    assert column == "sex" == result.column
    group = holdout["sex"].fillna("(missing)").to_numpy()
    selected = p1 > 0.5
    positive = (holdout["target"] == "yes").to_numpy()
    rates, tprs, fprs = {}, {}, {}
    for g in np.unique(group):
        rows = group == g
        rates[g] = selected[rows].mean()
        tprs[g] = selected[rows & positive].mean()
        fprs[g] = selected[rows & ~positive].mean()
        assert result.groups[g]["count"] == rows.sum()
        assert result.groups[g]["selection_rate"] == _close(rates[g])
        assert result.groups[g]["true_positive_rate"] == _close(tprs[g])
        assert result.groups[g]["false_positive_rate"] == _close(fprs[g])
        accuracy = (selected[rows] == positive[rows]).mean()
        assert result.groups[g]["accuracy"] == _close(accuracy)
    assert "(missing)" in result.groups and EVIL in result.groups
    spread = max(rates.values()) - min(rates.values())
    assert result.demographic_parity_difference == _close(spread)
    odds = max(max(tprs.values()) - min(tprs.values()), max(fprs.values()) - min(fprs.values()))
    assert result.equalized_odds_difference == _close(odds)
    assert result.mae_difference is None


def test_multiclass_and_regression_fairness() -> None:
    holdout, predictions, proba = _multiclass()
    result = fairness_metrics(holdout, "target", predictions, "classification", CLASSES, ["sex"])[
        "sex"
    ]
    group = holdout["sex"].fillna("(missing)").to_numpy()
    pred = proba.argmax(axis=1)
    spreads = []
    for k in range(3):
        rates = [(pred[group == g] == k).mean() for g in np.unique(group)]
        spreads.append(max(rates) - min(rates))
    assert result.demographic_parity_difference == _close(max(spreads))
    odds = result.equalized_odds_difference
    assert odds is not None and 0 <= odds <= 1
    assert set(result.groups["Male"]) >= {"count", "accuracy", "selection_rate_dog"}

    reg, reg_predictions = _regression()
    regression = fairness_metrics(reg, "target", reg_predictions, "regression", None, ["sex"])
    result = regression["sex"]
    errors = (reg["target"] - reg_predictions["prediction"]).abs()
    mae = errors.groupby(reg["sex"].fillna("(missing)")).mean()
    assert result.mae_difference == _close(mae.max() - mae.min())
    for g, value in mae.items():
        assert result.groups[str(g)]["mae"] == _close(value)
    assert result.demographic_parity_difference is None


# --- importance ------------------------------------------------------------------------------


def test_permutation_importance_ranks_the_used_column_first() -> None:
    holdout, _, _ = _binary(n=800)
    rng = np.random.default_rng(5)
    score = 1 / (1 + np.exp(-3 * holdout["signal"].to_numpy()))
    holdout["target"] = np.where(rng.uniform(size=len(holdout)) < score, "yes", "no")

    def predict(rows: pd.DataFrame) -> pd.DataFrame:
        assert "target" not in rows  # the model never sees its target
        p = 1 / (1 + np.exp(-3 * rows["signal"].to_numpy(dtype=float)))
        return pd.DataFrame({"prediction": "?", "probability_no": 1 - p, "probability_yes": p})

    importance = permutation_importance(
        predict,
        holdout,
        "target",
        "classification",
        BINARY,
        "roc_auc",
        ["signal", "noise", "sex"],
        n_repeats=3,
        max_rows=500,
    )
    assert importance["signal"][0] > 0.2
    assert importance["noise"] == (0.0, 0.0) and importance["sex"] == (0.0, 0.0)

    reg, _ = _regression()

    def predict_value(rows: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"prediction": 10 + 3 * rows["signal"].to_numpy(dtype=float)})

    reg_importance = permutation_importance(
        predict_value, reg, "target", "regression", None, "rmse", ["signal", "noise"]
    )
    # rmse is lower-is-better, yet the used column is positive: the drop in the good direction.
    assert reg_importance["signal"][0] > 1.0 and reg_importance["noise"][0] == 0.0


# --- report ----------------------------------------------------------------------------------


def test_classification_report_html_and_json() -> None:
    holdout, predictions, _ = _binary()
    # A group with no positive rows: its true-positive rate is NaN, which JSON gets as null.
    holdout.loc[holdout.index[:40], "sex"] = "nobody positive"
    holdout.loc[holdout.index[:40], "target"] = "no"
    predictions.loc[:39, ["probability_no", "probability_yes"]] = [0.8, 0.2]

    def predict(rows: pd.DataFrame) -> pd.DataFrame:
        return predictions.iloc[: len(rows)].reset_index(drop=True)

    report = evaluate_holdout(
        holdout,
        predictions,
        "target",
        "classification",
        BINARY,
        categorical=["sex"],
        numeric=["age"],
        sensitive=["sex"],
        slices={"old": "age >= 60"},
        predict=predict,
        importance_columns=["noise"],
    )
    y = (holdout["target"] == "yes").to_numpy().astype(int)
    proba = predictions[["probability_no", "probability_yes"]].to_numpy()
    assert report.rows == len(holdout) and report.metrics["roc_auc"] == _close(
        skm.roc_auc_score(y, proba[:, 1])
    )
    assert report.confusion_matrix == skm.confusion_matrix(y, proba.argmax(1)).tolist()
    assert report.importance_metric == "roc_auc" and set(report.importance or {}) == {"noise"}
    assert np.isnan(report.fairness["sex"].groups["nobody positive"]["true_positive_rate"])

    document = report.to_dict()
    text = json.dumps(document, allow_nan=False)
    assert (
        json.loads(text)["fairness"]["sex"]["groups"]["nobody positive"]["true_positive_rate"]
        is None
    )
    assert document["metrics"]["roc_auc"] == report.metrics["roc_auc"]
    old = next(s for s in document["slices"] if s["name"] == "old")
    assert old["rows"] == (holdout["age"] >= 60).sum() and "accuracy" in old

    page = report.render_html("Evaluation of <model>")
    assert page.count("data:image/png;base64,") >= 5  # confusion, ROC, PR, calibration, bars
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Evaluation of &lt;model&gt;" in page
    for heading in ("Per class", "Slices", "Fairness: sex", "Permutation importance"):
        assert heading in page


def test_regression_and_multiclass_reports() -> None:
    reg, reg_predictions = _regression()
    report = evaluate_holdout(
        reg,
        reg_predictions,
        "target",
        "regression",
        None,
        categorical=["sex"],
        numeric=["age", "income"],
        sensitive=["sex"],
        slices={},
    )
    assert report.labels is None and report.confusion_matrix is None
    assert report.importance is None and report.metrics == regression_metrics(
        reg["target"].to_numpy(), reg_predictions["prediction"].to_numpy()
    )
    json.dumps(report.to_dict(), allow_nan=False)
    page = report.render_html("regression")
    assert page.count("data:image/png;base64,") == 2 and EVIL not in page

    holdout, predictions, proba = _multiclass()
    report = evaluate_holdout(
        holdout,
        predictions,
        "target",
        "classification",
        CLASSES,
        categorical=[],
        numeric=[],
        sensitive=["sex"],
        slices={},
    )
    y = np.array([CLASSES.index(v) for v in holdout["target"]])
    assert report.confusion_matrix == skm.confusion_matrix(y, proba.argmax(1)).tolist()
    assert json.loads(json.dumps(report.to_dict(), allow_nan=False))["labels"] == CLASSES
    assert "data:image/png;base64," in report.render_html("three classes")


def test_a_count_target_with_zeros_gets_a_finite_percentage_error() -> None:
    """Issue 23: plain MAPE on a target with zeros read 4.8e15 in the report and MLflow."""
    rng = np.random.default_rng(3)
    holdout = _frame(rng, 400)
    holdout["target"] = rng.poisson(0.4, 400).astype(float)  # about two thirds zeros
    predictions = pd.DataFrame({"prediction": np.full(400, 0.4)})
    assert (holdout["target"] == 0).mean() > 0.5
    report = evaluate_holdout(
        holdout,
        predictions,
        "target",
        "regression",
        None,
        categorical=["sex"],
        numeric=["age"],
        sensitive=[],
        slices={},
    )
    y = holdout["target"].to_numpy()
    assert "mape" not in report.metrics
    assert report.metrics["wmape"] == _close(np.abs(y - 0.4).sum() / y.sum())
    assert 0.5 < report.metrics["wmape"] < 2.0
    assert "wmape" in json.loads(json.dumps(report.to_dict(), allow_nan=False))["metrics"]
    # A slice whose every true value is 0 has no percentage error at all: left out, not inf.
    zero = regression_metrics(np.zeros(5), np.ones(5))
    assert "wmape" not in zero and zero["mae"] == 1.0


def test_mismatched_predictions_are_rejected() -> None:
    holdout, predictions, _ = _binary(n=50)
    with pytest.raises(ValueError, match="prediction rows"):
        evaluate_holdout(
            holdout,
            predictions.iloc[:10],
            "target",
            "classification",
            BINARY,
            categorical=[],
            numeric=[],
            sensitive=[],
            slices={},
        )
