"""A Ray Data aggregation the stock set lacks: several quantiles of one column at once."""

from __future__ import annotations

from typing import Any

from ray.data.aggregate import Quantile
from ray.data.block import BlockColumnAccessor


class Quantiles(Quantile):
    """Quantiles ``qs`` of column ``on`` (nulls skipped, linear interpolation), as a list.

    Ray's :class:`~ray.data.aggregate.Quantile` gathers a column's values to compute one
    ``q``; several of them on one column would gather it once per ``q``. This gathers it once
    and finalises every ``q`` exactly as ``Quantile`` does.

    Example:
        >>> import ray
        >>> ray.data.range(5).aggregate(Quantiles("id", [0.25, 0.5]))  # doctest: +SKIP
        {'quantiles(id)': [1.0, 2.0]}
    """

    def __init__(self, on: str, qs: list[float], alias_name: str | None = None) -> None:
        super().__init__(
            on=on, q=0.5, ignore_nulls=True, alias_name=alias_name or f"quantiles({on})"
        )
        self._qs = list(qs)

    def finalize(self, accumulator: Any) -> list[Any] | None:  # type: ignore[override]
        accessor = BlockColumnAccessor.for_column(accumulator)
        return [accessor.quantile(q=q, ignore_nulls=True) for q in self._qs]
