"""What the data stage says it checked: the declared contract, or only the built-in row checks."""

from pathlib import Path

import pandas as pd
import pytest

from ray_mlops.errors import DataError
from tests.integration.test_data_quality import BAD_ROWS, _good_rows, _prepare

pytestmark = pytest.mark.usefixtures("ray_session")


def test_too_many_bad_rows_without_a_contract_do_not_blame_a_contract(tmp_path: Path) -> None:
    frame = pd.concat([_good_rows(100), BAD_ROWS], ignore_index=True)
    with pytest.raises(DataError) as caught:
        _prepare(tmp_path, frame, contract=None, quarantine={"max_bad_fraction": 0.01})
    message = str(caught.value)
    assert "data contract" not in message.replace("no data.contract declared", "")
    assert "fail the row checks (no data.contract declared" in message
    assert "missing_target" in message, message


def test_too_many_bad_rows_with_a_contract_name_it(tmp_path: Path) -> None:
    frame = pd.concat([_good_rows(100), BAD_ROWS], ignore_index=True)
    with pytest.raises(DataError, match=r"break the data contract \(data\.contract\)"):
        _prepare(tmp_path, frame, quarantine={"max_bad_fraction": 0.01})
