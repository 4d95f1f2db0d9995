"""List the committed benchmark results that are older than the code they measure.

``make bench-stale`` runs this. A result is current while the code it measured is the code at
``HEAD``: each result records the paths it measures (``measures``) and a fingerprint of their
git blobs when it ran (``code_fingerprint``, see ``_report.code_fingerprint``); the same
fingerprint is taken at ``HEAD`` and compared. Results written before fingerprints existed are
judged by history instead: stale when a commit after theirs touched the paths their benchmark
measures (``LEGACY_MEASURES``).

Exit status: 0 when every result is current, 1 when some are stale (listed), so CI or a
release script can refuse to publish figures older than the code. ``--json`` prints the
verdicts as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import code_fingerprint  # noqa: E402

# What each benchmark measured, for results that predate the ``measures`` key.
LEGACY_MEASURES: dict[str, list[str]] = {
    "data_prep": ["ray_mlops/data", "ray_mlops/features", "ray_mlops/datasets/synthetic.py"],
    "train_throughput": ["ray_mlops/train"],
    "tune_efficiency": ["ray_mlops/search", "ray_mlops/train"],
    "trial_startup": ["ray_mlops/search"],
    "trial_parallelism": ["ray_mlops/search"],
    "serve_load": ["ray_mlops/serve"],
    "registry_cli": ["ray_mlops/registry_cli.py", "ray_mlops/cli.py"],
    "cluster_overhead": ["ray_mlops", "cluster/local"],
}


@dataclass
class Verdict:
    """Whether one result file is current, and why."""

    result: str
    benchmark: str
    commit: str
    stale: bool
    reason: str


def git(*args: str, root: Path = ROOT) -> tuple[int, str]:
    """Run git in ``root``: its exit status and its stripped output."""
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout.strip()


def judge(path: Path, root: Path = ROOT) -> Verdict:
    """The verdict on one result file against ``HEAD`` of the repository at ``root``."""
    document: dict[str, Any] = json.loads(path.read_text())
    name = str(document.get("benchmark", path.stem))
    commit = str(document.get("commit", "unknown"))
    relative = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    recorded = document.get("code_fingerprint")
    measures = document.get("measures")
    if recorded and measures:
        now = code_fingerprint(measures, "HEAD", root)
        if now == recorded:
            return Verdict(relative, name, commit, False, "code unchanged since it ran")
        changed = last_change(measures, root)
        return Verdict(relative, name, commit, True, f"code changed since (last: {changed})")
    base = commit.split("+", 1)[0]
    paths = LEGACY_MEASURES.get(name.split("-")[0], ["ray_mlops"])
    paths = [*paths, f"benchmarks/{name.split('-')[0]}.py"]
    if base == "unknown":
        return Verdict(relative, name, commit, True, "it records no commit")
    if git("cat-file", "-e", f"{base}^{{commit}}", root=root)[0] != 0:
        return Verdict(relative, name, commit, True, "its commit is not in this repository")
    changed = last_change(paths, root)
    if not changed:
        return Verdict(relative, name, commit, False, "no commit touched the code it measured")
    ancestor = git("merge-base", "--is-ancestor", changed.split()[0], base, root=root)[0] == 0
    if ancestor and "+dirty" not in commit:
        return Verdict(relative, name, commit, False, "no code change after its commit")
    why = (
        "measured on a tree with uncommitted changes"
        if ancestor
        else f"code changed since (last: {changed})"
    )
    return Verdict(relative, name, commit, True, why)


def last_change(paths: list[str], root: Path = ROOT) -> str:
    """The last commit touching ``paths``: short hash and date, or '' when none did."""
    return git("log", "-1", "--format=%h %cs", "--", *paths, root=root)[1]


def main(argv: list[str] | None = None) -> int:
    """List stale results; exit 1 when any is stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", type=Path, help="result files (default: all)")
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    args = parser.parse_args(argv)
    # The profiles under results/profiles/ explain misses: they go stale like the results.
    files = args.results or sorted([*RESULTS.glob("*.json"), *RESULTS.glob("profiles/*.json")])
    verdicts = [judge(path.resolve()) for path in files]
    if args.json:
        print(json.dumps([asdict(v) for v in verdicts], indent=2))
    else:
        for verdict in verdicts:
            mark = "STALE  " if verdict.stale else "current"
            print(f"{mark}  {verdict.result}  ({verdict.commit}): {verdict.reason}")
        stale = sum(v.stale for v in verdicts)
        print(f"{stale} of {len(verdicts)} results stale")
    return 1 if any(v.stale for v in verdicts) else 0


if __name__ == "__main__":
    raise SystemExit(main())
