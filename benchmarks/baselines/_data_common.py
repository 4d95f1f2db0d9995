"""The task every side of ``benchmarks/data_prep.py`` performs: the spec, nothing else.

Data: the synthetic churn table of ray-mlops' ``datasets.synthetic`` (Parquet files in one
folder), plus one file of injected faults. Work, in this order:

1. Validate every row; the first rule a row breaks is its reason:
   ``unparseable:<column>`` (a numeric column that does not parse as a number: none in typed
   Parquet, but every side applies the rule), ``missing_target``, then among rows still valid
   ``duplicate_id`` (every row of an id seen more than once) and ``conflicting_labels``
   (identical values of all feature columns, nulls equal, with more than one label; found
   among the rows that passed the per-row rules, marked on rows not already marked).
   Bad rows are written, with their reason, to a Parquet file.
2. Split the valid rows by a hash of the id: ``bucket = (id * 2654435761) mod 2**32 mod
   10000``; test below 1500, validation below 3000, train otherwise (15% / 15% / 70%). Any
   tool computes it identically in 64-bit integers (ids are below 2**33).
3. Fit on train: per numeric column the median (missing values filled with it), the mean
   and the population standard deviation (ddof 0) of the observed values; per categorical
   column the 50 most frequent values (ties by value).
4. Transform every split into float32 model inputs: numeric ``(fill(x) - mean) / std``;
   categorical one-hot over the kept values, then an ``<other>`` slot, then a ``<missing>``
   slot (91 columns in all).

Each side prints one JSON line: ``seconds`` (the work, from the first read to the encoded
splits), ``bad`` (rows per reason), ``splits`` (rows and the checks below per split) and
``fit`` (the fitted values). The checks, computed after the clock stops: per split the sum
of each numeric column's encoded values, and per categorical column the rows in each slot.
"""

from __future__ import annotations

ID = "customer_id"
TARGET = "churned"
NUMERIC = ["age", "income", "balance", "tenure_months", "num_products", "credit_score"]
CATEGORICAL = ["region", "segment", "channel", "device", "plan", "city"]
FEATURES = NUMERIC + CATEGORICAL
MAX_CATEGORIES = 50
OTHER = "<other>"
MISSING = "<missing>"

HASH_MULTIPLIER = 2654435761  # Knuth's multiplicative hash
HASH_MODULUS = 2**32
BUCKETS = 10_000
TEST_CUT = 1_500  # bucket < TEST_CUT: test
VALIDATION_CUT = 3_000  # TEST_CUT <= bucket < VALIDATION_CUT: validation
SPLITS = ("train", "validation", "test")

MISSING_TARGET = "missing_target"
DUPLICATE_ID = "duplicate_id"
CONFLICTING_LABELS = "conflicting_labels"
