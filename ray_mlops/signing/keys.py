"""The signing key pair: an EC P-256 private key (mode 0600) and its public key, in PEM.

The pair lives outside the workspace (the workspace is uploaded with Ray Jobs and shared),
in ``governance.signing.key_dir``, else ``$RAY_MLOPS_KEY_DIR``, else
``~/.config/ray-mlops/signing``.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ray_mlops.errors import ConfigError, SignatureError

KEY_DIR_ENV = "RAY_MLOPS_KEY_DIR"
DEFAULT_KEY_DIR = Path("~/.config/ray-mlops/signing")
PRIVATE_KEY_FILE = "signing-key.pem"
PUBLIC_KEY_FILE = "signing-key.pub.pem"


@dataclass(frozen=True)
class KeyPair:
    """Where the pair's files are.

    Attributes:
        private_key: The PEM private key (mode 0600).
        public_key: The PEM public key (shared with every loader).
    """

    private_key: Path
    public_key: Path

    @property
    def fingerprint(self) -> str:
        """The public key's fingerprint (what a signature names as its signer)."""
        return fingerprint(self.public_key.read_text())

    @property
    def exists(self) -> bool:
        """Whether both files are there."""
        return self.private_key.is_file() and self.public_key.is_file()


def key_dir(configured: str | None = None) -> Path:
    """The key folder: ``configured``, else ``$RAY_MLOPS_KEY_DIR``, else the default."""
    chosen = configured or os.environ.get(KEY_DIR_ENV) or str(DEFAULT_KEY_DIR)
    return Path(chosen).expanduser().resolve()


def key_pair(folder: Path) -> KeyPair:
    """The pair's paths in ``folder`` (the files may not exist yet)."""
    return KeyPair(folder / PRIVATE_KEY_FILE, folder / PUBLIC_KEY_FILE)


def check_outside_workspace(folder: Path, workspace_root: Path | None) -> None:
    """Refuse a key folder inside the workspace, which Ray Jobs upload and teams share.

    Raises:
        ConfigError: ``folder`` is ``workspace_root`` or below it.
    """
    if workspace_root is None:
        return
    root = workspace_root.resolve()
    if folder.resolve() == root or root in folder.resolve().parents:
        raise ConfigError(
            f"governance.signing.key_dir: {folder} is inside the workspace {root}, which is "
            f"uploaded with Ray Jobs and shared; keep the private key outside it (e.g. "
            f"{DEFAULT_KEY_DIR} or ${KEY_DIR_ENV})"
        )


def create_key_pair(folder: Path, force: bool = False) -> KeyPair:
    """Write a new EC P-256 pair into ``folder``: the private key with mode 0600.

    Raises:
        SignatureError: a key is already there and ``force`` is false.
    """
    pair = key_pair(folder)
    if not force and (pair.private_key.exists() or pair.public_key.exists()):
        raise SignatureError(
            f"a signing key already exists in {folder}; versions signed with it would no "
            "longer verify under a new one. Pass --force to replace it anyway"
        )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if force:
        for path in (pair.private_key, pair.public_key):
            path.unlink(missing_ok=True)
    # Created with 0600 from the start: never readable by others, not even for a moment.
    descriptor = os.open(pair.private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    pair.public_key.write_bytes(public_pem(private.public_key()).encode())
    return pair


def ensure_key_pair(folder: Path) -> tuple[KeyPair, bool]:
    """The pair in ``folder``, made if missing; whether it was made now.

    Raises:
        SignatureError: only one of the two files is there.
    """
    pair = key_pair(folder)
    if not (pair.private_key.exists() or pair.public_key.exists()):
        try:
            return create_key_pair(folder), True
        except (FileExistsError, SignatureError):  # another run on this node made it now
            pass
    for _ in range(50):  # a pair being written by another run completes within moments
        if pair.exists:
            return pair, False
        time.sleep(0.1)
    raise SignatureError(
        f"the signing key pair in {folder} is incomplete (one of {PRIVATE_KEY_FILE}, "
        f"{PUBLIC_KEY_FILE} is missing); restore it, or `ray-mlops keys init --force`"
    )


def public_pem(key: ec.EllipticCurvePublicKey) -> str:
    """A public key as PEM text (SubjectPublicKeyInfo)."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def fingerprint(pem: str) -> str:
    """SHA-256 of the public key's PEM, as model-signing records its signer (hex).

    Raises:
        ValueError: ``pem`` is not a PEM public key.
    """
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve public key")
    return hashlib.sha256(public_pem(key).encode()).hexdigest()
