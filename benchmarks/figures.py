"""Write the benchmark figures of the READMEs and the plots from the committed JSON results.

Figures are never typed: each result under ``benchmarks/results/`` carries its goals
(``goals``: claim, measured value, target, met) and its scaling curves (``curves``), and this
script renders them:

- ``README.md``, between ``<!-- benchmarks:begin -->`` and ``<!-- benchmarks:end -->``: one
  table of every goal with its figure and verdict;
- ``benchmarks/README.md``, between the same markers: each result file with its machine, date,
  commit, its goals with their details and its plots (``stale.py`` says which are current:
  that depends on later commits, so it is not written into a README);
- ``benchmarks/results/plots/<result>--<curve>.png`` for every curve.

``--check`` writes nothing and exits 1 when a README differs from what the results say (``make
lint`` runs it), so a result committed without its README figures, or a figure edited by hand,
fails the build.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PLOTS = RESULTS / "plots"
BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"
sys.path.insert(0, str(ROOT / "benchmarks"))


def load_results(folder: Path = RESULTS) -> list[tuple[Path, dict[str, Any]]]:
    """Every result document under ``folder``, by file name."""
    return [(path, json.loads(path.read_text())) for path in sorted(folder.glob("*.json"))]


def figure(value: float | None, unit: str) -> str:
    """A measured value as the README prints it."""
    if value is None:
        return "not measured"
    if unit == "x":
        return f"{value:.2f}x"
    if unit in ("", "count"):
        return f"{value:g}"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def verdict(met: bool | None) -> str:
    """Met, missed (in bold), or not measured on this machine."""
    return {True: "met", False: "**missed**", None: "open (not measured here)"}[met]


def plot_name(result: Path, curve_name: str) -> str:
    """The file name of a curve's PNG."""
    return f"{result.stem}--{curve_name}.png"


def main_table(results: list[tuple[Path, dict[str, Any]]]) -> str:
    """The top-level README's table: every goal of every result."""
    rows = [
        "| benchmark | goal | measured | target | verdict | result |",
        "|---|---|---|---|---|---|",
    ]
    untabled = []
    for path, doc in results:
        goals = doc.get("goals") or []
        if not goals:
            untabled.append(path.name)
        for g in goals:
            rows.append(
                f"| {doc.get('benchmark', path.stem)} | {g['claim']} | {figure(g['value'], g['unit'])}"
                f" | {g['op']} {figure(g['target'], g['unit'])} | {verdict(g['met'])}"
                f" | [`{path.name}`](benchmarks/results/{path.name}) |"
            )
    text = "\n".join(rows)
    if untabled:
        names = ", ".join(f"`{n}`" for n in untabled)
        text += f"\n\nResults that state no goals (diagnostics, or an older format; see `benchmarks/README.md`): {names}."
    return text


def detail_sections(results: list[tuple[Path, dict[str, Any]]]) -> str:
    """The benchmarks README's sections: per result, where and when, goals, plots."""
    parts = []
    for path, doc in results:
        parts.append(
            f"#### [`{path.name}`](results/{path.name})\n\n"
            f"{doc.get('machine', '?')}; {doc.get('date', '?')}; commit `{doc.get('commit', '?')}`"
            " (whether it is still current: `make bench-stale`)."
        )
        goals = doc.get("goals") or []
        if goals:
            lines = ["| goal | measured | target | verdict | how |", "|---|---|---|---|---|"]
            for g in goals:
                lines.append(
                    f"| {g['claim']} | {figure(g['value'], g['unit'])} | {g['op']}"
                    f" {figure(g['target'], g['unit'])} | {verdict(g['met'])} | {g.get('detail', '')} |"
                )
            parts.append("\n".join(lines))
        else:
            parts.append(
                "No goals in this file: a diagnostic that explains another benchmark's figures,"
                " or a result written before `goals` existed (`make bench-stale` tells which)."
            )
        curves = doc.get("curves") or []
        if curves:
            links = ", ".join(
                f"[{c['name']}](results/plots/{plot_name(path, c['name'])})" for c in curves
            )
            parts.append(f"Plots: {links}.")
    return "\n\n".join(parts)


def profile_sections(profiles: list[tuple[Path, dict[str, Any]]]) -> str:
    """Where the time goes: each profile's findings (sentences its script built from its
    numbers), with where and when it ran."""
    if not profiles:
        return ""
    parts = ["### Where the time goes (profiles of the missed goals)"]
    for path, doc in profiles:
        findings = "\n".join(f"- {line}" for line in doc.get("findings") or [])
        parts.append(
            f"#### [`profiles/{path.name}`](results/profiles/{path.name})\n\n"
            f"{doc.get('machine', '?')}; {doc.get('date', '?')}; commit `{doc.get('commit', '?')}`;"
            f" {doc.get('setup', '')}.\n\n{findings}"
        )
    return "\n\n".join(parts)


def draw(path: Path, curve_doc: dict[str, Any], out: Path) -> None:
    """Draw one curve of a result as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for label, ys in curve_doc["series"].items():
        points = [(x, y) for x, y in zip(curve_doc["x"], ys, strict=True) if y is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_xlabel(curve_doc["x_label"])
    ax.set_ylabel(curve_doc["y_label"])
    if curve_doc.get("log_x"):
        ax.set_xscale("log")
    if curve_doc.get("log_y"):
        ax.set_yscale("log")
    ax.set_title(f"{curve_doc['name']} ({path.stem})", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def replace_between(text: str, body: str, where: Path) -> str:
    """``text`` with what lies between the markers replaced by ``body``."""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{where}: the markers {BEGIN} and {END} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{body}\n{END}{tail}"


def render(root: Path = ROOT) -> dict[Path, str]:
    """The two READMEs as the results say they should read."""
    results = load_results(root / "benchmarks" / "results")
    profiles = load_results(root / "benchmarks" / "results" / "profiles")
    details = "\n\n".join(
        part for part in (detail_sections(results), profile_sections(profiles)) if part
    )
    targets = {
        root / "README.md": main_table(results),
        root / "benchmarks" / "README.md": details,
    }
    return {path: replace_between(path.read_text(), body, path) for path, body in targets.items()}


def main(argv: list[str] | None = None) -> int:
    """Rewrite the READMEs and plots, or with ``--check`` only compare."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on drift")
    args = parser.parse_args(argv)
    rendered = render()
    drift = [path for path, text in rendered.items() if path.read_text() != text]
    missing_plots = [
        PLOTS / plot_name(path, c["name"])
        for path, doc in load_results()
        for c in doc.get("curves") or []
        if not (PLOTS / plot_name(path, c["name"])).exists()
    ]
    if args.check:
        for path in drift:
            print(
                f"{path.relative_to(ROOT)}: figures differ from benchmarks/results (run make bench-figures)"
            )
        for plot in missing_plots:
            print(f"{plot.relative_to(ROOT)}: plot missing (run make bench-figures)")
        return 1 if drift or missing_plots else 0
    for path, text in rendered.items():
        path.write_text(text)
    for path, doc in load_results():
        for c in doc.get("curves") or []:
            draw(path, c, PLOTS / plot_name(path, c["name"]))
    print(f"wrote {', '.join(str(p.relative_to(ROOT)) for p in rendered)} and the plots")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
