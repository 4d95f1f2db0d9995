"""Regenerate the serveConfigV2 of cluster/rayservice.yaml from ``ray-mlops serve --export``.

The RayService's Serve config is never edited by hand: it is what
``ray-mlops serve cluster/serve.yaml --export FILE`` writes, as the manifest's last key.
Run it from any folder after changing cluster/serve.yaml or the serving code::

    python cluster/make_rayservice.py            # rewrite cluster/rayservice.yaml
    python cluster/make_rayservice.py --check    # exit 1 when the manifest is stale
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "cluster" / "rayservice.yaml"
# As the export records it and as the pods resolve it: relative to the repo root here and
# to the image's WORKDIR (/app) there, which holds the same file (cluster/Dockerfile).
SERVE_CONFIG = "cluster/serve.yaml"
# The manifest's last key; everything after it is the generated block.
KEY_LINE = "  serveConfigV2: |\n"
INDENT = "    "


def export_serve_config(config: str = SERVE_CONFIG) -> str:
    """What ``ray-mlops serve CONFIG --export`` writes, run in the repo root.

    Raises:
        SystemExit: the export failed; its error output is in the message.
    """
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "serve.yaml"
        command = [sys.executable, "-m", "ray_mlops", "serve", config, "--export", str(out)]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"ray-mlops serve {config} --export failed:\n{done.stderr}")
        return out.read_text()


def render(manifest: str, serve_config: str, source: Path = MANIFEST) -> str:
    """``manifest`` with everything after its ``serveConfigV2: |`` line replaced.

    Raises:
        SystemExit: the manifest has no such line.
    """
    head, found, _ = manifest.partition(KEY_LINE)
    if not found:
        raise SystemExit(f"{source}: no line {KEY_LINE.strip()!r} (the last key of spec)")
    lines = serve_config.splitlines(keepends=True)
    return head + KEY_LINE + "".join(INDENT + line if line.strip() else line for line in lines)


def main(argv: list[str] | None = None) -> int:
    """Rewrite the manifest, or with ``--check`` report whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the manifest is stale")
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    current = args.manifest.read_text()
    fresh = render(current, export_serve_config(), args.manifest)
    if not args.check:
        args.manifest.write_text(fresh)
        print(f"wrote {args.manifest}")
        return 0
    if fresh == current:
        return 0
    diff = difflib.unified_diff(
        current.splitlines(keepends=True), fresh.splitlines(keepends=True), "committed", "export"
    )
    sys.stderr.writelines(diff)
    print(f"{args.manifest} is stale: run python cluster/make_rayservice.py", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
