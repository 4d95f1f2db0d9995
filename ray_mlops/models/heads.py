"""Output heads: what the last layer means, its loss, and how it turns into predictions.

binary: one logit, binary cross-entropy; multiclass: one logit per class, cross-entropy;
regression: one value, mean squared error on the standardised target.
"""

from __future__ import annotations

import torch
from torch.nn import functional

from ray_mlops.models.spec import Head


def head_outputs(outputs: torch.Tensor, head: Head) -> torch.Tensor:
    """Logits ``(n, k)`` for multiclass, a vector ``(n,)`` for the one-output heads."""
    return outputs if head == "multiclass" else outputs[:, 0]


def loss_sum(outputs: torch.Tensor, targets: torch.Tensor, head: Head) -> torch.Tensor:
    """The batch's summed loss (sums add up across batches and workers exactly)."""
    logits = head_outputs(outputs, head).float()
    if head == "multiclass":
        return functional.cross_entropy(logits, targets.long(), reduction="sum")
    if head == "binary":
        return functional.binary_cross_entropy_with_logits(logits, targets.float(), reduction="sum")
    return functional.mse_loss(logits, targets.float(), reduction="sum")


def predicted_class(outputs: torch.Tensor, head: Head) -> torch.Tensor:
    """Class indices of a classifier's outputs."""
    logits = head_outputs(outputs, head)
    return (logits > 0).long() if head == "binary" else logits.argmax(dim=1)


def class_probabilities(outputs: torch.Tensor, head: Head) -> torch.Tensor:
    """``(n, k)`` probabilities in float64 (``k`` = 2 for binary)."""
    logits = head_outputs(outputs, head).double()
    if head == "binary":
        positive = torch.sigmoid(logits)
        return torch.stack([1.0 - positive, positive], dim=1)
    return torch.softmax(logits, dim=1)
