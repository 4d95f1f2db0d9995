"""The baseline of ``train_throughput.py``: a plain PyTorch training loop, as a user writes it.

Written from PyTorch's own tutorials ("Optimizing Model Parameters", "Automatic Mixed
Precision"): an ``nn.Sequential`` MLP, ``BCEWithLogitsLoss``, AdamW (fused on CUDA), bf16
autocast on CUDA, the whole train split held as tensors on the device and a fresh
``torch.randperm`` each epoch (the fastest way to feed a small MLP: a ``DataLoader`` over a
``TensorDataset`` gathers row by row), a validation pass after every epoch. The loss is
summed on the device and read once per epoch, so the GPU never waits for the host.

The data are ``.npy`` files written by the driver (``features.npy``, ``labels.npy``,
``val_features.npy``, ``val_labels.npy``). Prints one JSON line: per-epoch samples/s (timed
around the training steps only), per-epoch mean train loss, the validation loss and accuracy
after the last epoch, the steps taken, when the first step ended (``time.time()``) and a
fingerprint of the data, so the driver can check
that both sides did the same work.

Usage:
    python benchmarks/baselines/train_torch.py --data DIR --epochs 2 --batch-size 1024
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def build_mlp(inputs: int, hidden: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = inputs
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", default="512,512")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    x = torch.from_numpy(np.load(args.data / "features.npy")).to(device)
    y = torch.from_numpy(np.load(args.data / "labels.npy")).float().to(device)
    val_x = torch.from_numpy(np.load(args.data / "val_features.npy")).to(device)
    val_y = torch.from_numpy(np.load(args.data / "val_labels.npy")).float().to(device)
    fingerprint = {
        "rows": len(y),
        "positives": int(y.sum().item()),
        "feature_sum": float(x.double().sum().item()),
        "validation_rows": len(val_y),
    }

    torch.manual_seed(args.seed)
    model = build_mlp(x.shape[1], [int(w) for w in args.hidden.split(",")]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, fused=device.type == "cuda")
    loss_fn = nn.BCEWithLogitsLoss()
    ready = time.perf_counter()

    samples_per_s, train_loss, steps, first_step_at = [], [], 0, 0.0
    for _ in range(args.epochs):
        model.train()
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        order = torch.randperm(len(y), device=device)
        total = torch.zeros((), device=device)
        for start in range(0, len(y), args.batch_size):
            index = order[start : start + args.batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(x[index]).squeeze(1)
            loss = loss_fn(logits.float(), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(index)
            steps += 1
            if steps == 1:  # the reference for `ray-mlops train`'s time to its first step
                if device.type == "cuda":
                    torch.cuda.synchronize()
                first_step_at = time.time()
        epoch_loss = total.item() / len(y)  # waits for the device: the epoch is all in
        samples_per_s.append(len(y) / (time.perf_counter() - began))
        train_loss.append(epoch_loss)

        model.eval()
        with torch.no_grad():
            val_logits = torch.cat(
                [
                    model(val_x[i : i + args.batch_size]).squeeze(1).float()
                    for i in range(0, len(val_y), args.batch_size)
                ]
            )
            val_loss = loss_fn(val_logits, val_y).item()
            val_accuracy = ((val_logits > 0).float() == val_y).float().mean().item()

    print(
        json.dumps(
            {
                "samples_per_s": samples_per_s,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "epochs": args.epochs,
                "steps": steps,
                "samples": args.epochs * len(y),
                "data": fingerprint,
                "setup_s": ready - started,
                "first_step_at": first_step_at,
                "device": str(device),
                "threads": torch.get_num_threads(),
                "cpus_allowed": len(os.sched_getaffinity(0)),
            }
        )
    )


if __name__ == "__main__":
    main()
