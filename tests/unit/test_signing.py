"""Model signing (issue 28): a packaged model folder signed and verified, Ray-free.

One changed byte in each kind of file (weights, feature state, model code, MLmodel, the
signature), a valid signature by an untrusted key, a missing signature and a planted
pickle are each refused, with the file or the reason named; a planted pickle is refused
before anything loads it.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from ray_mlops.config import ModelConfig, SigningConfig
from ray_mlops.errors import ConfigError, SignatureError
from ray_mlops.features.state import CategoricalState, FeatureState, NumericState
from ray_mlops.models.factory import build_model
from ray_mlops.models.from_config import make_spec
from ray_mlops.models.package import save_pyfunc_model
from ray_mlops.signing import (
    SIGNATURE_FILE,
    Trust,
    check_outside_workspace,
    create_key_pair,
    ensure_key_pair,
    find_pickles,
    sign_model,
    trust_for,
    verify_model,
)

STATE = FeatureState(
    numeric={"age": NumericState(fill=40.0, center=38.0, scale=2.0)},
    categorical={"color": CategoricalState(categories=["red", "blue"])},
    labels=["no", "yes"],
)
TARGET = "adult/v7"
PREDICTOR = Path("artifacts/predictor")


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ray-mlops model folder (MLmodel, code/, weights, feature state), unsigned."""
    torch.manual_seed(0)
    spec = make_spec(
        ModelConfig(hidden_sizes=[8]), "classification", STATE.n_features, 2, Path(".")
    )
    folder = tmp_path_factory.mktemp("packaged") / "model"
    example = pd.DataFrame({"age": [30.0], "color": ["red"]})
    save_pyfunc_model(folder, build_model(spec), spec, STATE, example)
    return folder


@pytest.fixture()
def keys(tmp_path: Path) -> Trust:
    """A fresh key pair; the trust of its public key."""
    pair = create_key_pair(tmp_path / "keys")
    return Trust(public_keys=(pair.public_key.read_text(),), key_dir=str(tmp_path / "keys"))


@pytest.fixture()
def signed(packaged: Path, tmp_path: Path, keys: Trust) -> Path:
    """A copy of the packaged model, signed with ``keys``."""
    folder = tmp_path / "model"
    shutil.copytree(packaged, folder)
    sign_model(folder, ensure_key_pair(tmp_path / "keys")[0])
    return folder


def _flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _refusal(folder: Path, trust: Trust) -> str:
    with pytest.raises(SignatureError) as refused:
        verify_model(folder, trust, TARGET)
    assert refused.value.exit_code == 5
    message = str(refused.value)
    assert message.startswith(f"{TARGET}: refused")
    return message


def test_signed_model_verifies_and_names_its_signer(signed: Path, keys: Trust) -> None:
    from ray_mlops.signing import fingerprint

    assert (signed / SIGNATURE_FILE).is_file()
    assert verify_model(signed, keys, TARGET) == fingerprint(keys.public_keys[0])


def test_signing_disabled_skips_verification(packaged: Path) -> None:
    assert verify_model(packaged, Trust(enabled=False), TARGET) is None


@pytest.mark.parametrize(
    "relative",
    [
        PREDICTOR / "model.pt",  # the weights
        PREDICTOR / "feature_state.json",  # the feature state
        Path("code/ray_mlops/models/predictor.py"),  # the model code
        Path("MLmodel"),
    ],
    ids=["weights", "feature-state", "model-code", "MLmodel"],
)
def test_one_changed_byte_is_refused_and_named(signed: Path, keys: Trust, relative: Path) -> None:
    _flip_byte(signed / relative, offset=len((signed / relative).read_bytes()) // 2)
    message = _refusal(signed, keys)
    assert f"changed: {relative.as_posix()}" in message


def test_an_added_file_is_refused_and_named(signed: Path, keys: Trust) -> None:
    (signed / "code" / "ray_mlops" / "extra.py").write_text("import os\n")
    assert "added: code/ray_mlops/extra.py" in _refusal(signed, keys)


def test_a_changed_signature_is_refused(signed: Path, keys: Trust) -> None:
    signature = signed / SIGNATURE_FILE
    text = signature.read_text()
    start = text.index('"sig":"') + len('"sig":"') + 8
    swapped = "A" if text[start] != "A" else "B"
    signature.write_text(text[:start] + swapped + text[start + 1 :])
    assert f"{SIGNATURE_FILE} does not verify" in _refusal(signed, keys)


def test_a_truncated_signature_is_refused(signed: Path, keys: Trust) -> None:
    signature = signed / SIGNATURE_FILE
    signature.write_text(signature.read_text()[:100])
    assert SIGNATURE_FILE in _refusal(signed, keys)


def test_an_untrusted_signers_valid_signature_is_refused(
    signed: Path, keys: Trust, tmp_path: Path
) -> None:
    other = create_key_pair(tmp_path / "other")
    sign_model(signed, other)  # valid over every file, by a key nobody trusts
    message = _refusal(signed, keys)
    assert f"untrusted key (fingerprint {other.fingerprint[:16]}" in message
    trusting_both = Trust(public_keys=(*keys.public_keys, other.public_key.read_text()))
    assert verify_model(signed, trusting_both, TARGET) == other.fingerprint


def test_an_unsigned_version_is_refused_with_how_to_sign(packaged: Path, keys: Trust) -> None:
    message = _refusal(packaged, keys)
    assert "not signed" in message and "governance.signing.enabled: false" in message


def test_no_trusted_key_is_refused_with_how_to_make_one(signed: Path) -> None:
    assert "ray-mlops keys init" in _refusal(signed, Trust(public_keys=()))


@pytest.mark.parametrize("name", ["artifacts/predictor/model.pt.bak", "python_model.pkl"])
def test_a_planted_pickle_is_refused_before_it_loads(
    signed: Path, keys: Trust, tmp_path: Path, name: str
) -> None:
    marker = tmp_path / "unpickled"

    class Payload:
        # Unpickling calls os.system: the marker file proves a load ran it.
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    planted = signed / name
    planted.write_bytes(pickle.dumps(Payload(), protocol=4))
    sign_model(signed, ensure_key_pair(tmp_path / "keys")[0])  # even when signed by us
    assert find_pickles(signed) == [name]
    message = _refusal(signed, keys)
    assert f"pickle files ({name})" in message
    assert not marker.exists()


def test_the_packaged_model_holds_no_pickle(packaged: Path) -> None:
    # Weights are a torch zip (read with weights_only=True), state and spec are JSON.
    assert find_pickles(packaged) == []
    assert (packaged / PREDICTOR / "model.pt").read_bytes()[:2] == b"PK"


def test_private_key_is_owner_only_and_not_overwritten(tmp_path: Path) -> None:
    pair = create_key_pair(tmp_path / "k")
    assert pair.private_key.stat().st_mode & 0o777 == 0o600
    before = pair.private_key.read_bytes()
    with pytest.raises(SignatureError, match="--force"):
        create_key_pair(tmp_path / "k")
    assert pair.private_key.read_bytes() == before
    assert create_key_pair(tmp_path / "k", force=True).private_key.read_bytes() != before


def test_key_dir_inside_the_workspace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inside the workspace"):
        check_outside_workspace(tmp_path / "ws" / "keys", tmp_path / "ws")
    check_outside_workspace(tmp_path / "keys", tmp_path / "ws")


def test_trust_defaults_to_the_key_dirs_public_key(tmp_path: Path) -> None:
    pair = create_key_pair(tmp_path / "k")
    trust = trust_for(SigningConfig(key_dir=str(tmp_path / "k")))
    assert trust.enabled and trust.public_keys == (pair.public_key.read_text(),)
    listed = trust_for(
        SigningConfig(
            key_dir=str(tmp_path / "none"), trusted_public_keys=["k/signing-key.pub.pem"]
        ),
        base_dir=tmp_path,
    )
    assert listed.public_keys == trust.public_keys
    assert Trust.from_settings(trust.to_settings()) == trust
    with pytest.raises(ConfigError, match=r"missing\.pem"):
        trust_for(SigningConfig(trusted_public_keys=[str(tmp_path / "missing.pem")]))


def test_the_registrys_download_note_is_not_a_change(signed: Path, keys: Trust) -> None:
    # MLflow writes registered_model_meta into a version it downloads through models:/.
    (signed / "registered_model_meta").write_text("model_name: adult\nmodel_version: '7'\n")
    assert verify_model(signed, keys, TARGET)
    (signed / "code" / "registered_model_meta").write_text("x")  # only at the top
    assert "added: code/registered_model_meta" in _refusal(signed, keys)


def test_keys_cli_makes_shows_refuses_to_overwrite_and_audits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ray_mlops.audit import actions, audit_log_for
    from ray_mlops.signing import fingerprint
    from ray_mlops.signing_cli import keys_app

    (tmp_path / "ws").mkdir()
    monkeypatch.chdir(tmp_path / "ws")  # the workspace: its audit log gets key.create
    monkeypatch.setenv("RAY_MLOPS_KEY_DIR", str(tmp_path / "keys"))
    runner = CliRunner()
    made = runner.invoke(keys_app, ["init"])
    assert made.exit_code == 0, made.output
    public = (tmp_path / "keys" / "signing-key.pub.pem").read_text()
    assert f"fingerprint: sha256:{fingerprint(public)}" in made.output
    shown = runner.invoke(keys_app, ["show"])
    assert shown.exit_code == 0 and fingerprint(public) in shown.output
    again = runner.invoke(keys_app, ["init"])
    assert isinstance(again.exception, SignatureError) and "--force" in str(again.exception)
    assert (tmp_path / "keys" / "signing-key.pub.pem").read_text() == public
    [record] = list(audit_log_for(str(tmp_path / "ws" / ".ray-mlops")).records())
    assert record.action == actions.KEY_CREATE and fingerprint(public)[:16] in record.target
    monkeypatch.setenv("RAY_MLOPS_KEY_DIR", str(tmp_path / "ws" / "keys"))
    inside = runner.invoke(keys_app, ["init"])
    assert isinstance(inside.exception, ConfigError)
    assert not (tmp_path / "ws" / "keys").exists()
