"""The package's metadata builds without setuptools' deprecation warnings (one on every install)."""

from __future__ import annotations

import warnings
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version
from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def test_license_is_an_spdx_expression_that_setuptools_reads_without_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), PYPROJECT)
    assert dist.metadata.license_expression == "Apache-2.0"
    deprecations = [
        str(w.message).splitlines()[0] for w in caught if "Deprecat" in w.category.__name__
    ]
    assert deprecations == []


def test_the_build_asks_for_a_setuptools_that_reads_spdx_license_expressions() -> None:
    build = tomllib.loads(PYPROJECT.read_text())["build-system"]["requires"]
    setuptools = next(Requirement(r) for r in build if Requirement(r).name == "setuptools")
    # PEP 639 license expressions arrived in setuptools 77; older ones reject the string.
    assert not setuptools.specifier.contains(Version("76.1"))
    assert setuptools.specifier.contains(Version("77.0.3"))
