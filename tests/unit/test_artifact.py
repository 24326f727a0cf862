"""Artifact manifests: any change to a file, the file list, or the signature is refused."""

from __future__ import annotations

import json

import pytest

from models.artifact import ArtifactError, Ed25519Signer, HmacSigner, verify, write_manifest


@pytest.fixture
def artifact(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x01graph")
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "vocab.json").write_text('{"a": 1}')
    return tmp_path


def test_verified_artifact_round_trips(artifact):
    m = write_manifest(artifact, "v7", HmacSigner(b"key"), metadata={"ap": 0.4})
    got = verify(artifact, expected_sha256=m.artifact_sha256, verifier=HmacSigner(b"key"))
    assert got.version == "v7" and set(got.files) == {"model.onnx", "spec/vocab.json"}


@pytest.mark.parametrize("tamper", ["edit", "delete", "add", "manifest_digest"])
def test_tampering_is_refused(artifact, tamper):
    write_manifest(artifact, "v1")
    if tamper == "edit":
        (artifact / "spec" / "vocab.json").write_text('{"a": 2}')
    elif tamper == "delete":
        (artifact / "model.onnx").unlink()
    elif tamper == "add":
        (artifact / "backdoor.py").write_text("print('x')")
    else:
        m = json.loads((artifact / "manifest.json").read_text())
        m["files"]["model.onnx"] = "0" * 64
        (artifact / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError):
        verify(artifact)


def test_wrong_expected_digest_or_key_is_refused(artifact):
    m = write_manifest(artifact, "v1", HmacSigner(b"right"))
    with pytest.raises(ArtifactError, match="expected"):
        verify(artifact, expected_sha256="f" * 64)
    with pytest.raises(ArtifactError, match="signature"):
        verify(artifact, expected_sha256=m.artifact_sha256, verifier=HmacSigner(b"wrong"))


def test_unsigned_artifact_refused_when_a_key_is_configured(artifact):
    write_manifest(artifact, "v1")
    with pytest.raises(ArtifactError, match="unsigned"):
        verify(artifact, verifier=HmacSigner(b"k"))


def test_ed25519_public_key_verifies_and_detects_forgery(artifact):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def pem(k):
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    def pub(k):
        return k.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)

    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    write_manifest(artifact, "v1", Ed25519Signer(private_pem=pem(key)))
    verify(artifact, verifier=Ed25519Signer(public_pem=pub(key)))
    with pytest.raises(ArtifactError, match="signature"):
        verify(artifact, verifier=Ed25519Signer(public_pem=pub(other)))
