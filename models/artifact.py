"""Model artifacts: a directory with a manifest of sha256 digests, and an optional signature.

An artifact's identity is ``artifact_sha256``: the sha256 of its canonical file list (path and
digest of every file). A worker loads an artifact only after :func:`verify` agrees with the digest it
was told to expect and, when a key is configured, with the signature. Signatures are HMAC-SHA256
(a shared secret) or Ed25519 (a private key signs in the retrain job, workers hold the public key).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "model.onnx").write_bytes(b"graph")
>>> m = write_manifest(d, version="v1", signer=HmacSigner(b"k"))
>>> verify(d, expected_sha256=m.artifact_sha256, verifier=HmacSigner(b"k")).version
'v1'
>>> _ = (d / "model.onnx").write_bytes(b"tampered")
>>> verify(d)
Traceback (most recent call last):
...
models.artifact.ArtifactError: model.onnx: sha256 does not match the manifest
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

MANIFEST = "manifest.json"


class ArtifactError(RuntimeError):
    """An artifact that must not be loaded: missing, tampered, or wrongly signed."""


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _digest_of(files: dict[str, str]) -> str:
    canonical = json.dumps(sorted(files.items()), separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


class Signer(Protocol):
    algorithm: str

    def sign(self, digest: str) -> str: ...

    def verify(self, digest: str, signature: str) -> bool: ...


class HmacSigner:
    """HMAC-SHA256 over the artifact digest; the key is a shared secret from settings."""

    algorithm = "hmac-sha256"

    def __init__(self, key: bytes):
        if not key:
            raise ValueError("an empty HMAC key signs nothing")
        self._key = key

    def sign(self, digest: str) -> str:
        return hmac.new(self._key, digest.encode(), hashlib.sha256).hexdigest()

    def verify(self, digest: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(digest), signature)


class Ed25519Signer:
    """Ed25519: the retrain job signs with the private key; workers need only the public key."""

    algorithm = "ed25519"

    def __init__(self, private_pem: bytes | None = None, public_pem: bytes | None = None):
        from cryptography.hazmat.primitives import serialization

        self._private = (serialization.load_pem_private_key(private_pem, password=None)
                         if private_pem else None)
        pub = self._private.public_key() if self._private else None
        if public_pem:
            pub = serialization.load_pem_public_key(public_pem)
        if pub is None:
            raise ValueError("Ed25519Signer needs a private or a public key")
        self._public = pub

    def sign(self, digest: str) -> str:
        if self._private is None:
            raise ArtifactError("this Ed25519Signer holds only a public key and cannot sign")
        return base64.b64encode(self._private.sign(digest.encode())).decode()

    def verify(self, digest: str, signature: str) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            self._public.verify(base64.b64decode(signature), digest.encode())
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Manifest:
    version: str
    files: dict[str, str]
    artifact_sha256: str
    created_at: str
    metadata: dict[str, Any] = field(default_factory=dict)
    signature: str | None = None
    signature_algorithm: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)


def write_manifest(directory: Path, version: str, signer: Signer | None = None,
                   metadata: dict[str, Any] | None = None) -> Manifest:
    """Hash every file under ``directory`` (but the manifest) and write ``manifest.json``."""
    directory = Path(directory)
    files = {p.relative_to(directory).as_posix(): file_sha256(p)
             for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MANIFEST}
    if not files:
        raise ArtifactError(f"{directory}: no files to put in a manifest")
    digest = _digest_of(files)
    manifest = Manifest(version=version, files=files, artifact_sha256=digest,
                        created_at=datetime.now(UTC).isoformat(), metadata=metadata or {},
                        signature=signer.sign(digest) if signer else None,
                        signature_algorithm=signer.algorithm if signer else None)
    (directory / MANIFEST).write_text(manifest.to_json())
    return manifest


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory}: no {MANIFEST}")
    try:
        return Manifest(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from None


def verify(directory: Path, expected_sha256: str | None = None,
           verifier: Signer | None = None) -> Manifest:
    """Check every file against the manifest, the digest against ``expected_sha256``, and the
    signature against ``verifier``. Returns the manifest; raises :class:`ArtifactError`."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    for rel, digest in manifest.files.items():
        path = directory / rel
        if not path.is_file():
            raise ArtifactError(f"{rel}: listed in the manifest but missing")
        if file_sha256(path) != digest:
            raise ArtifactError(f"{rel}: sha256 does not match the manifest")
    extra = {p.relative_to(directory).as_posix() for p in directory.rglob("*")
             if p.is_file() and p.name != MANIFEST} - set(manifest.files)
    if extra:
        raise ArtifactError(f"files not in the manifest: {', '.join(sorted(extra))}")
    if _digest_of(manifest.files) != manifest.artifact_sha256:
        raise ArtifactError("manifest digest does not match its file list")
    if expected_sha256 is not None and manifest.artifact_sha256 != expected_sha256:
        raise ArtifactError(f"artifact sha256 {manifest.artifact_sha256[:12]}… is not the "
                            f"expected {expected_sha256[:12]}…")
    if verifier is not None:
        if not manifest.signature:
            raise ArtifactError("artifact is unsigned but a signature is required")
        if manifest.signature_algorithm != verifier.algorithm:
            raise ArtifactError(f"signature algorithm {manifest.signature_algorithm} is not "
                                f"the configured {verifier.algorithm}")
        if not verifier.verify(manifest.artifact_sha256, manifest.signature):
            raise ArtifactError("signature does not verify")
    return manifest
