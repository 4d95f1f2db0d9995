"""Evaluation plots as HTML ``<img>`` snippets (PNG embedded in base64)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from ray_mlops.evaluate.metrics import CALIBRATION_BINS, label_indices
from ray_mlops.reports import BLUE, embed_png, new_figure, no_values, plain

# More one-vs-rest curves than this make an unreadable plot; the most frequent classes win.
MAX_CURVES = 10
# A residual scatter of more points only takes longer to draw; they are sampled (seeded).
MAX_POINTS = 5000


def confusion_matrix_plot(matrix: Sequence[Sequence[int]], labels: list[str]) -> str:
    """Counts of true (rows) by predicted (columns) class, each cell labelled.

    Args:
        matrix: ``matrix[i][j]`` rows of true class ``labels[i]`` predicted as ``labels[j]``.
        labels: The classes, in the matrix's order.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    figure, ax = new_figure()
    side = min(12.0, 2.5 + 0.6 * len(labels))
    figure.set_size_inches(side + 1.0, side)
    ax.imshow(counts, cmap="Blues")
    names = [plain(label) for label in labels]
    ax.set_xticks(range(len(labels)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    darkest = counts.max() if counts.size else 0
    for (i, j), value in np.ndenumerate(counts):
        # White text on the darker half of the colour scale, where black would vanish.
        color = "white" if darkest and value > darkest / 2 else "black"
        ax.text(j, i, f"{value:,}", ha="center", va="center", color=color, fontsize="small")
    return embed_png(figure, "confusion matrix")


def roc_plot(y_true: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> str:
    """ROC curve of the positive class (binary) or one-vs-rest per class (multiclass)."""
    figure, ax = new_figure()
    drawn = 0
    for k, y_k, score in _one_vs_rest(y_true, probabilities, labels):
        fpr, tpr, _ = skm.roc_curve(y_k, score)
        auc = skm.auc(fpr, tpr)
        ax.plot(fpr, tpr, label=plain(f"{labels[k]} (AUC {auc:.3f})"))
        drawn += 1
    if not drawn:
        no_values(ax)
        return embed_png(figure, "ROC curve (undefined)")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize="small", loc="lower right")
    return embed_png(figure, "ROC curve")


def precision_recall_plot(y_true: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> str:
    """Precision-recall curve of the positive class or one-vs-rest per class."""
    figure, ax = new_figure()
    drawn = 0
    for k, y_k, score in _one_vs_rest(y_true, probabilities, labels):
        precision, recall, _ = skm.precision_recall_curve(y_k, score)
        ap = skm.average_precision_score(y_k, score)
        ax.step(recall, precision, where="post", label=plain(f"{labels[k]} (AP {ap:.3f})"))
        drawn += 1
    if not drawn:
        no_values(ax)
        return embed_png(figure, "precision-recall curve (undefined)")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0.0, 1.05)
    ax.legend(fontsize="small", loc="lower left")
    return embed_png(figure, "precision-recall curve")


def calibration_plot(
    y_true: np.ndarray, probabilities: np.ndarray, labels: list[str], bins: int = CALIBRATION_BINS
) -> str:
    """Reliability diagram: observed frequency against mean predicted probability per bin.

    Equal-width bins, as in ``calibration_error``; a well-calibrated model is on the diagonal.
    """
    figure, ax = new_figure()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
    drawn = 0
    for k, y_k, score in _one_vs_rest(y_true, probabilities, labels, need_both=False):
        observed, predicted = calibration_curve(y_k, score, n_bins=bins, strategy="uniform")
        ax.plot(predicted, observed, marker="o", markersize=3, label=plain(labels[k]))
        drawn += 1
    if not drawn:
        no_values(ax)
        return embed_png(figure, "reliability diagram (undefined)")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.legend(fontsize="small", loc="upper left")
    return embed_png(figure, "reliability diagram")


def residuals_plot(y_true: np.ndarray, predicted: np.ndarray, seed: int = 0) -> str:
    """Residuals (true - predicted) against the predicted value."""
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    if len(y) > MAX_POINTS:
        keep = np.random.default_rng(seed).choice(len(y), MAX_POINTS, replace=False)
        y, p = y[keep], p[keep]
    figure, ax = new_figure()
    ax.scatter(p, y - p, s=6, alpha=0.4, color=BLUE)
    ax.axhline(0.0, color="black", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (true - predicted)")
    return embed_png(figure, "residuals against predicted values")


def residual_histogram(y_true: np.ndarray, predicted: np.ndarray) -> str:
    """Distribution of the residuals (true - predicted)."""
    residuals = np.asarray(y_true, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
    figure, ax = new_figure()
    if len(residuals):
        ax.hist(residuals, bins=30, color=BLUE)
        ax.set_xlabel("residual (true - predicted)")
        ax.set_ylabel("rows")
    else:
        no_values(ax)
    return embed_png(figure, "histogram of residuals")


def importance_plot(importance: dict[str, tuple[float, float]], metric: str) -> str:
    """Horizontal bars of mean permutation importance, most important on top, std as error."""
    ranked = sorted(importance.items(), key=lambda item: -item[1][0])
    figure, ax = new_figure(len(ranked))
    if not ranked:
        no_values(ax)
        return embed_png(figure, "permutation importance (none)")
    names = [plain(name) for name, _ in ranked][::-1]
    means = [mean for _, (mean, _) in ranked][::-1]
    stds = [std for _, (_, std) in ranked][::-1]
    ax.barh(names, means, xerr=stds, color=BLUE)
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_xlabel(plain(f"drop of {metric} when shuffled"))
    return embed_png(figure, "permutation importance")


def _one_vs_rest(
    y_true: np.ndarray, probabilities: np.ndarray, labels: list[str], need_both: bool = True
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(class, is-that-class, its probability) of the classes to draw, on rows of known label.

    Binary draws the positive class alone; multiclass the most frequent classes. A curve that
    needs both outcomes (ROC, precision-recall) is skipped for a class absent or alone.
    """
    y_index = label_indices(y_true, labels)
    known = y_index >= 0
    y_index, probabilities = y_index[known], probabilities[known]
    if len(labels) == 2:
        classes = [1]
    else:
        support = np.bincount(y_index, minlength=len(labels))
        classes = [int(k) for k in np.argsort(-support, kind="stable")[:MAX_CURVES]]
    curves = []
    for k in classes:
        y_k = (y_index == k).astype(int)
        if len(y_k) == 0 or (need_both and not 0 < y_k.sum() < len(y_k)):
            continue
        curves.append((k, y_k, probabilities[:, k]))
    return curves
