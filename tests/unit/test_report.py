"""The profile report is one self-contained page with a plot per column and escaped data."""

from __future__ import annotations

import base64
import re
import sys
from dataclasses import replace

from ray_mlops.data.profile import CategoricalProfile, DatasetProfile, NumericProfile
from ray_mlops.data.report import render_profile_html

IMG = '<img src="data:image/png;base64,'
EVIL = "<script>alert('x')</script>"


AGE = NumericProfile(
    count=90,
    missing=10,
    distinct=40,
    mean=38.5,
    std=12.25,
    min=17.0,
    max=90.0,
    quantiles={"p01": 17.0, "p05": 19.0, "p25": 28.0, "p50": 37.0, "p75": 48.0},
    histogram_edges=[17.0, 35.25, 53.5, 71.75, 90.0],
    histogram_counts=[40, 30, 15, 5],
    target_association=0.31,
)


def _profile(task: str = "classification") -> DatasetProfile:
    numeric = {
        "age": AGE,
        "constant": replace(AGE, histogram_edges=[2.5, 2.5], histogram_counts=[90], std=0.0),
        "empty": replace(
            AGE,
            count=0,
            missing=100,
            distinct=0,
            mean=None,
            std=None,
            min=None,
            max=None,
            quantiles={},
            histogram_edges=[],
            histogram_counts=[],
            target_association=None,
        ),
    }
    categorical = {
        f"job {EVIL}": CategoricalProfile(
            count=95,
            missing=5,
            distinct=4,
            top=[("clerk", 50), (EVIL, 30), ("$5 & $6 tips", 10)],
            other_count=5,
            target_association=0.2,
        ),
        "unseen": CategoricalProfile(0, 100, 0, [], 0, None),
    }
    regression = task == "regression"
    return DatasetProfile(
        rows=100,
        numeric=numeric,
        categorical=categorical,
        target=f"income {EVIL}",
        task=task,
        target_balance=None if regression else {"<=50K": 76, ">50K": 24},
        target_summary=replace(AGE, target_association=None) if regression else None,
    )


def _images(page: str) -> list[bytes]:
    encoded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [base64.b64decode(text) for text in encoded]


def test_every_column_and_the_summary_have_a_png() -> None:
    profile = _profile()
    page = render_profile_html(profile, "Adult profile")
    columns = len(profile.numeric) + len(profile.categorical)
    # One per column, the target balance and the association ranking.
    assert page.count(IMG) == columns + 2
    assert all(png.startswith(b"\x89PNG") for png in _images(page))
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<h1>Adult profile</h1>" in page


def test_regression_summary_plots_the_target_distribution() -> None:
    profile = _profile("regression")
    page = render_profile_html(profile, "Regression")
    assert page.count(IMG) == len(profile.numeric) + len(profile.categorical) + 2


def test_user_strings_are_escaped() -> None:
    page = render_profile_html(_profile(), f"Report {EVIL}")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "job &lt;script&gt;" in page


def test_page_is_self_contained() -> None:
    page = render_profile_html(_profile(), "Self-contained")
    assert not re.search(r"https?://", page)
    assert "<link" not in page and "<script" not in page
    assert 'src="' not in page.replace(IMG, "")


def test_rendering_leaves_pyplot_alone() -> None:
    render_profile_html(_profile(), "No global state")
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or not pyplot.get_fignums()
