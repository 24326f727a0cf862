"""TLS certificates and SCRAM credentials for the managed broker's SASL_SSL listener.

Made on this machine at first start (a private CA, a server certificate for the loopback host, a
random SCRAM password), kept under ``<home>/cluster/security`` with owner-only permissions, and
never printed. Production clusters bring their own PKI and credentials; this exists so txmon's
SASL/TLS client configuration is exercised against a real broker.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecurityFiles:
    ca_pem: Path  # trust anchor for clients
    server_pem: Path  # server private key + certificate chain (Kafka's PEM keystore)
    username: str
    password: str

    def __repr__(self) -> str:  # the password never reaches a log line
        return f"SecurityFiles(ca_pem={self.ca_pem}, username={self.username!r}, password=***)"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure(directory: Path, host: str, username: str = "txmon") -> SecurityFiles:
    """Create (once) a CA, a server certificate for ``host`` and a SCRAM password."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_pem, server_pem, cred = directory / "ca.pem", directory / "server.pem", directory / "scram.json"
    if not (ca_pem.exists() and server_pem.exists()):
        ca, server = _certificates(host)
        ca_pem.write_bytes(ca)
        _write_private(server_pem, server)
    if not cred.exists():
        password = os.environ.get("TXMON_BROKER__SCRAM_PASSWORD") or secrets.token_urlsafe(24)
        _write_private(cred, json.dumps({"username": username, "password": password}).encode())
    c = json.loads(cred.read_text())
    return SecurityFiles(ca_pem, server_pem, c["username"], c["password"])


def _certificates(host: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "txmon local CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=825))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=397))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    server = (key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
              + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    return ca_cert.public_bytes(pem), server
