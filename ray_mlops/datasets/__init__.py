"""Real datasets bundled with ray-mlops, so the quick start needs no download."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ADULT_CSV", "adult_path"]

ADULT_CSV = Path(__file__).parent / "adult" / "adult.csv.gz"


def adult_path() -> Path:
    """Path of the bundled UCI Adult census income table (gzip-compressed CSV)."""
    return ADULT_CSV
