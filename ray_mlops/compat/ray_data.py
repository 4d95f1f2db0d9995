"""Where this package reaches into Ray Data's private interior (pinned Ray 2.60).

- A global aggregation without the shuffle (:mod:`ray_mlops.data.aggregate`) runs Ray's own
  accumulate step on each block (``BlockAccessor._aggregate``) and its combine-and-finalize
  step on the driver (``ArrowBlockAccessor._combine_aggregated_blocks``), both keyed by a
  ``SortKey`` (``ray.data._internal.planner.exchange.sort_task_spec``): the functions Ray's
  hash aggregation calls, so every ``AggregateFnV2`` gives what ``Dataset.aggregate`` gives.
- ``Quantile._combine_column`` rejects the Arrow-null column that stands for "no block at all"
  (an empty dataset); :func:`empty_safe_quantile` makes that the "no values" accumulator.

Ray is imported inside the functions, so importing this module does not import Ray.
``tests/unit/test_compat.py`` fails, naming the API, when an upgrade changes one of them.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from ray.data.aggregate import AggregateFnV2


def aggregate_block(block: pa.Table, aggs: tuple[AggregateFnV2, ...]) -> pa.Table:
    """The accumulators of ``aggs`` over one block, as a one-row table (no group key)."""
    from ray.data._internal.planner.exchange.sort_task_spec import SortKey
    from ray.data.block import BlockAccessor

    return BlockAccessor.for_block(block)._aggregate(SortKey(None), aggs)


def combine_aggregated(blocks: list[pa.Table], aggs: tuple[AggregateFnV2, ...]) -> pa.Table:
    """One-row partials from :func:`aggregate_block` combined and finalized, as one table."""
    from ray.data._internal.arrow_block import ArrowBlockAccessor
    from ray.data._internal.planner.exchange.sort_task_spec import SortKey

    combined, _ = ArrowBlockAccessor._combine_aggregated_blocks(
        blocks,
        SortKey(None),
        aggs,  # type: ignore[arg-type]  # annotated as a 1-tuple in Ray
        finalize=True,
    )
    return combined


@functools.cache
def empty_safe_quantile() -> type[Any]:
    """Ray's ``Quantile``, whose combine step takes an empty dataset's accumulator column.

    Built on first use so that importing this module does not import Ray.
    """
    from ray.data.aggregate import Quantile

    class EmptySafeQuantile(Quantile):
        def _combine_column(self, accumulator_col: Any) -> Any:
            # Without any block (an empty dataset) the column is Arrow nulls, which Quantile's
            # flatten rejects; None is the "no values" accumulator that finalize skips.
            if pa.types.is_null(accumulator_col.type):
                return None
            return super()._combine_column(accumulator_col)

    return EmptySafeQuantile
