from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ray_mlops.config import load_config
from ray_mlops.data.stage import prepare_data
from ray_mlops.errors import DataError
from ray_mlops.features.fit import fit_feature_state
from ray_mlops.features.transform import transform_features
from ray_mlops.serve.schema import InputSchema, parse_body, records_frame
from ray_mlops.train.encode import encode_split
from tests.conftest import write_config

pytestmark = pytest.mark.usefixtures("ray_session")


def _load(directory: Path, **data: object):
    loaded = load_config(write_config(directory, **data))
    prepared = prepare_data(
        loaded.pipeline.data, "classification", directory, directory / "quarantine"
    )
    return loaded.pipeline, prepared


def test_splits_cover_every_row_and_are_stable(workspace: Path, adult_sample: pd.DataFrame) -> None:
    _, first = _load(workspace)
    _, second = _load(workspace)
    assert first.rows_read == len(adult_sample)
    assert sum(first.split_counts.values()) + first.quarantine.rows == len(adult_sample)
    assert first.split_counts == second.split_counts
    ids_first = set(first.splits["test"].to_pandas()["person_id"])
    assert ids_first == set(second.splits["test"].to_pandas()["person_id"])
    assert first.fingerprint == second.fingerprint


def test_fingerprint_ignores_row_order_but_not_content(
    tmp_path: Path, adult_sample: pd.DataFrame
) -> None:
    adult_sample.sample(frac=1.0, random_state=0).to_csv(tmp_path / "sample.csv", index=False)
    _, shuffled = _load(tmp_path)
    changed = adult_sample.copy()
    changed.loc[0, "age"] += 1
    changed.to_csv(tmp_path / "sample.csv", index=False)
    _, edited = _load(tmp_path)
    adult_sample.to_csv(tmp_path / "sample.csv", index=False)
    _, original = _load(tmp_path)
    assert shuffled.fingerprint == original.fingerprint != edited.fingerprint


def test_missing_column_is_named_with_the_available_ones(workspace: Path) -> None:
    with pytest.raises(DataError) as caught:
        _load(workspace, numeric=["age", "salary"])
    message = str(caught.value)
    assert "data.numeric: column 'salary' is not in the data" in message
    assert "columns available: person_id, age" in message


def test_feature_state_matches_pandas_on_the_train_split(workspace: Path) -> None:
    cfg, data = _load(workspace)
    state = fit_feature_state(data.splits["train"], cfg.data, cfg.features, cfg.task)
    train = data.splits["train"].to_pandas()
    age = train["age"].astype(float)
    assert state.numeric["age"].center == pytest.approx(age.mean())
    assert state.numeric["age"].scale == pytest.approx(age.std(ddof=0))
    assert state.numeric["age"].fill == pytest.approx(age.median())
    top = train["workclass"].value_counts()
    assert state.categorical["workclass"].categories[0] == top.index[0]
    assert set(state.categorical["workclass"].categories) == set(top.index)
    assert state.labels == sorted(train["income"].unique())


def test_ray_data_batches_and_single_requests_encode_identically(workspace: Path) -> None:
    import ray.data

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    cfg, data = _load(workspace)
    state = fit_feature_state(data.splits["train"], cfg.data, cfg.features, cfg.task)
    test_rows = data.splits["test"].to_pandas()
    # Encoded rows come out sorted by a hash of the raw row: match them up by that key.
    encoded = {
        int(row["row_key"]): row["features"]
        for row in encode_split(data.splits["test"], state, "income").take_all()
    }
    keys = pd.util.hash_pandas_object(test_rows, index=False).to_numpy().view(np.int64)
    assert len(encoded) == len(test_rows)
    batch_features = np.stack([encoded[int(key)] for key in keys])
    schema = InputSchema(
        numeric=cfg.data.numeric, categorical=cfg.data.categorical, order=state.input_columns
    )
    request_rows = test_rows[state.input_columns].astype(object)
    request_rows = request_rows.where(request_rows.notna(), None)
    for i, record in enumerate(request_rows.to_dict(orient="records")):
        body = pd.io.json.ujson_dumps({"records": [record]}).encode()
        frame = records_frame(parse_body(body), schema, max_records=1)
        assert np.array_equal(transform_features(frame, state)[0], batch_features[i]), i
    assert test_rows[cfg.data.categorical].isna().any().any(), "sample should hold missing values"
