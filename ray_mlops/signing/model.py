"""Sign a model folder and verify it, with OpenSSF's ``model-signing`` and an EC key.

The signature (a Sigstore bundle over the SHA-256 of every file) is :data:`SIGNATURE_FILE`
inside the model folder, which hashing skips: it is uploaded and downloaded with the model,
and nothing else in the folder escapes it. Verification checks, in order: no pickle in the
folder, a signature present, its signer among the trusted keys, the signature itself, and
every file's digest (a changed, added or missing file is named).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from model_signing import hashing, signing, verifying

from ray_mlops.errors import SignatureError
from ray_mlops.signing.keys import KeyPair, fingerprint
from ray_mlops.signing.pickles import find_pickles
from ray_mlops.signing.trust import Trust

SIGNATURE_FILE = "model.sig"
HOW_TO_SIGN = (
    "register it again with signing on (`ray-mlops run`, key from `ray-mlops keys init`), "
    "or set governance.signing.enabled: false to load unsigned versions"
)


# What MLflow's registry writes into a version's folder when it is downloaded (the version's
# name and number, YAML): not part of the model, never executed.
REGISTRY_META_FILE = "registered_model_meta"


def _hashing() -> hashing.Config:
    # Every file but these counts, git files included: nothing else is exempt.
    return hashing.Config().set_ignored_paths(
        paths=[SIGNATURE_FILE, REGISTRY_META_FILE], ignore_git_paths=False
    )


def sign_model(folder: Path, keys: KeyPair) -> Path:
    """Sign every file of ``folder`` with the private key; the signature file's path."""
    signature = folder / SIGNATURE_FILE
    signature.unlink(missing_ok=True)
    config = signing.Config().set_hashing_config(_hashing())
    config.use_elliptic_key_signer(private_key=keys.private_key).sign(folder, signature)
    return signature


def signer_of(signature: Path) -> str | None:
    """The fingerprint of the key a signature names as its signer (None if it names none).

    Raises:
        ValueError: the file is not a signature bundle.
    """
    bundle = json.loads(signature.read_text())
    hint = bundle.get("verificationMaterial", {}).get("publicKey", {}).get("hint")
    return str(hint) if hint else None


def verify_model(folder: Path, trust: Trust, target: str) -> str | None:
    """Check ``folder`` against its signature and the trusted signers.

    Args:
        folder: The downloaded model folder.
        trust: Whether to check, and the trusted public keys.
        target: What the folder is (``"<model>/v<version>"``), for the message.

    Returns:
        The signer's fingerprint; None when signing is disabled.

    Raises:
        SignatureError: a pickle in the folder, no signature, an untrusted signer, a signature
            that does not verify, or files that do not match it (named).
    """
    if not trust.enabled:
        return None
    pickles = find_pickles(folder)
    if pickles:
        raise SignatureError(
            f"{target}: refused before loading: the model folder holds pickle files "
            f"({', '.join(pickles)}); nothing is unpickled from a model folder"
        )
    signature = folder / SIGNATURE_FILE
    if not signature.is_file():
        raise SignatureError(f"{target}: refused: the version is not signed; {HOW_TO_SIGN}")
    if not trust.public_keys:
        raise SignatureError(
            f"{target}: refused: no trusted public key (none in {trust.key_dir or 'the key dir'}"
            ", none in governance.signing.trusted_public_keys); `ray-mlops keys init` makes one"
        )
    try:
        signer = signer_of(signature)
    except (ValueError, OSError, AttributeError) as exc:
        raise SignatureError(
            f"{target}: refused: {SIGNATURE_FILE} is not a readable signature ({exc})"
        ) from None
    trusted = {fingerprint(pem): pem for pem in trust.public_keys}
    if signer is not None and signer not in trusted:
        raise SignatureError(
            f"{target}: refused: signed by an untrusted key (fingerprint {signer[:16]}...); "
            f"trusted: {', '.join(f[:16] + '...' for f in trusted)}"
        )
    candidates = [trusted[signer]] if signer is not None else list(trusted.values())
    failure = ""
    for pem in candidates:
        failure = _verify_with(folder, signature, pem)
        if not failure:
            return signer or fingerprint(pem)
    raise SignatureError(f"{target}: refused: {failure}")


def _verify_with(folder: Path, signature: Path, pem: str) -> str:
    """'' if ``folder`` verifies under the public key ``pem``, else what failed."""
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as key:
        key.write(pem)
        key.flush()
        config = verifying.Config().set_hashing_config(_hashing())
        try:
            config.use_elliptic_key_verifier(public_key=key.name).verify(folder, signature)
        except ValueError as exc:
            return _named(str(exc))
        except Exception as exc:  # cryptography's InvalidSignature, a malformed bundle
            return (
                f"{SIGNATURE_FILE} does not verify under the trusted key "
                f"({type(exc).__name__}{': ' + str(exc) if str(exc) else ''}): the signature "
                "or what it signed was changed"
            )
    return ""


def _named(message: str) -> str:
    """model-signing's mismatch message, with the files it names and without the digests."""
    if not message.startswith("Signature mismatch"):
        return f"{SIGNATURE_FILE}: {message}"
    message = message.replace("\\'", "'")  # the list's repr escapes some quotes
    parts = []
    changed = sorted(set(re.findall(r"Hash mismatch for '([^']+)'", message)))
    if changed:
        parts.append(f"changed: {', '.join(changed)}")
    for kind, label in (("Extra files found", "added"), ("Missing files", "missing")):
        found = re.search(kind + r" in model '[^']*': ([^'\"\]]+)", message)
        if found:
            parts.append(f"{label}: {found.group(1).strip()}")
    return "files do not match the signature: " + "; ".join(parts or [message])
