"""SECURITY.md cannot go stale: every test it cites as a proof exists, and what it says of the
MLflow pin is what pyproject.toml and the installed MLflow are."""

from __future__ import annotations

import ast
import re
from functools import cache
from importlib.metadata import version
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "SECURITY.md"
CITATION = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
# CVE-2023-1177 was fixed in MLflow 2.2.1 and its bypass, CVE-2023-2780, in 2.3.1.
PATH_TRAVERSAL_FIXED = Version("2.3.1")
THREATS = (
    "Unauthorised access",
    "CVE-2023-48022",
    "CVE-2023-1177",
    "Poisoned data",
    "Denial of service",
    "Pickle in model files",
    "Model swapping",
    "Audit tampering",
    "Secrets exposure",
)


def _citations() -> list[tuple[str, str]]:
    return sorted(set(CITATION.findall(DOC.read_text())))


@cache
def _tests_in(path: str) -> frozenset[str]:
    """The test functions a test file defines at its top level."""
    tree = ast.parse((REPO / path).read_text())
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    )


def test_the_doc_cites_a_proof_under_every_threat() -> None:
    text = DOC.read_text()
    sections = re.split(r"(?m)^### ", text.partition("## Threats, controls and proofs")[2])
    for threat in THREATS:
        section = next((s for s in sections if s.startswith(threat) or threat in s[:80]), None)
        assert section is not None, f"SECURITY.md has no section on {threat}"
        assert CITATION.search(section), f"SECURITY.md cites no test for {threat}"


@pytest.mark.parametrize(("path", "name"), _citations())
def test_every_cited_test_exists(path: str, name: str) -> None:
    assert (REPO / path).is_file(), f"SECURITY.md cites {path}, which does not exist"
    assert name in _tests_in(path), f"SECURITY.md cites {path}::{name}, which is not a test"


def test_a_renamed_test_would_be_caught() -> None:
    assert "test_no_such_proof" not in _tests_in("tests/unit/test_security_doc.py")
    assert len(_citations()) >= 30


def test_the_mlflow_pin_is_past_the_path_traversal_fixes() -> None:
    """CVE-2023-1177 (and CVE-2023-2780): the lowest MLflow the project allows, and the one
    installed, carry both fixes; the doc says which release fixed it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = [Requirement(dep) for dep in project["dependencies"]]
    mlflow = next(req for req in pins if req.name == "mlflow")
    floors = [Version(spec.version) for spec in mlflow.specifier if spec.operator == ">="]
    assert floors and min(floors) >= PATH_TRAVERSAL_FIXED, mlflow
    assert Version(version("mlflow")) >= PATH_TRAVERSAL_FIXED
    text = DOC.read_text()
    assert "MLflow before 2.2.1" in text and f"`mlflow>={min(floors)}`" in text
