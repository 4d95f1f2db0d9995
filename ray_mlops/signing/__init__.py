"""Model signing: sign a model's files at registration, verify them at every load.

OpenSSF's ``model-signing`` with an EC P-256 key pair kept outside the workspace
(:mod:`~ray_mlops.signing.keys`); the signature travels inside the model folder
(:data:`~ray_mlops.signing.model.SIGNATURE_FILE`). A load checks that no pickle is there,
the signer (:class:`~ray_mlops.signing.trust.Trust`) and every file; a refusal raises
:class:`~ray_mlops.errors.SignatureError`, is audited and announced
(:mod:`~ray_mlops.signing.events`). Imported lazily: model-signing takes 0.4 s to import.
"""

from ray_mlops.exports import lazy_exports

__all__ = [
    "KEY_DIR_ENV",
    "SIGNATURE_FILE",
    "KeyPair",
    "Trust",
    "check_outside_workspace",
    "create_key_pair",
    "default_trust",
    "ensure_key_pair",
    "find_pickles",
    "fingerprint",
    "key_dir",
    "key_pair",
    "record_key_created",
    "report_refusal",
    "sign_model",
    "trust_for",
    "verify_model",
    "verify_or_refuse",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "KEY_DIR_ENV": "keys",
        "SIGNATURE_FILE": "model",
        "KeyPair": "keys",
        "Trust": "trust",
        "check_outside_workspace": "keys",
        "create_key_pair": "keys",
        "default_trust": "trust",
        "ensure_key_pair": "keys",
        "find_pickles": "pickles",
        "fingerprint": "keys",
        "key_dir": "keys",
        "key_pair": "keys",
        "record_key_created": "events",
        "report_refusal": "events",
        "sign_model": "model",
        "trust_for": "trust",
        "verify_model": "model",
        "verify_or_refuse": "events",
    },
)
