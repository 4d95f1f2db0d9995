"""`ray-mlops keys`: the signing key pair kept outside the workspace."""

from __future__ import annotations

from pathlib import Path

import typer

from ray_mlops.console import cli_console
from ray_mlops.workspace import Workspace

out = cli_console()
err = cli_console(stderr=True)

CONFIG_OPT = typer.Option(
    None,
    "--config",
    "-c",
    help="Pipeline config whose governance.signing.key_dir applies (and whose workspace "
    "the key folder must stay out of). Default: $RAY_MLOPS_KEY_DIR, else "
    "~/.config/ray-mlops/signing, and the working directory's workspace.",
)

keys_app = typer.Typer(
    name="keys",
    help=(
        "The key pair that signs every registered model (EC P-256, model-signing): made "
        "once, kept outside the workspace; every load checks its signature."
    ),
    no_args_is_help=True,
)


def _key_folder(config: Path | None) -> tuple[Path, Workspace, str | None]:
    """The key folder, the workspace and the audit location of ``config``."""
    from ray_mlops.signing.keys import key_dir

    if config is None:
        return key_dir(None), Workspace.here(), None
    from ray_mlops.config import load_config

    loaded = load_config(config)
    governance = loaded.pipeline.governance
    return key_dir(governance.signing.key_dir), Workspace.of(loaded), governance.audit.location


@keys_app.command("init")
def init(
    config: Path | None = CONFIG_OPT,
    force: bool = typer.Option(
        False,
        "--force",
        help="Replace an existing pair: versions signed with the old key stop verifying.",
    ),
) -> None:
    """Make the signing key pair (private key mode 0600, public key beside it)."""
    from ray_mlops.signing.events import record_key_created
    from ray_mlops.signing.keys import check_outside_workspace, create_key_pair

    folder, workspace, audit_location = _key_folder(config)
    check_outside_workspace(folder, workspace.root)
    pair = create_key_pair(folder, force=force)
    why = "ray-mlops keys init --force (replaced)" if force else "ray-mlops keys init"
    record_key_created(pair.fingerprint, folder, workspace.storage, audit_location, why=why)
    err.print(f"[green]made[/] the signing key pair in {folder}", highlight=False)
    _show(pair.private_key, pair.public_key, pair.fingerprint)


@keys_app.command("show")
def show(config: Path | None = CONFIG_OPT) -> None:
    """Where the key pair is, and the public key's fingerprint (what signatures name)."""
    from ray_mlops.errors import SignatureError
    from ray_mlops.signing.keys import key_pair

    folder, _, _ = _key_folder(config)
    pair = key_pair(folder)
    if not pair.exists:
        raise SignatureError(
            f"no signing key pair in {folder}: `ray-mlops keys init` makes one (the first "
            "registration with signing on also does)"
        )
    _show(pair.private_key, pair.public_key, pair.fingerprint)


def _show(private_key: Path, public_key: Path, fingerprint: str) -> None:
    out.print(f"private key: {private_key}", highlight=False)
    out.print(f"public key:  {public_key}", highlight=False)
    out.print(f"fingerprint: sha256:{fingerprint}", highlight=False)
