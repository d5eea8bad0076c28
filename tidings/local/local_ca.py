"""A certificate authority of one run, for the hosts the local stack answers to over TLS.

Handlers build AWS endpoints themselves (`https://{apiId}.execute-api.{region}.amazonaws.com`,
a custom domain) and verify their certificates: the local stack serves those names with a
certificate this authority signs, and the functions' environment trusts it (management_endpoints.py).
The authority's key lives only in this process's memory and dies with the run; the server key is
written (0600, in the run's own 0700 folder) only for as long as `ssl` takes to load it.

`cryptography` does the X.509 work (it comes with moto already); the certificates are ECDSA
P-256, which every TLS client in use accepts and which takes milliseconds to make.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "tidings dev local CA"
# a run lasts hours at most; a day covers a machine whose clock drifts
VALIDITY = datetime.timedelta(days=1)
CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class ServerCertificate:
    """A server's certificate chain (PEM) and its private key (PEM, unencrypted)."""

    chain_pem: bytes
    key_pem: bytes


class LocalAuthority:
    """A self-signed CA made now; `issue` signs server certificates for given names."""

    def __init__(self, now: datetime.datetime | None = None) -> None:
        self._now = now or datetime.datetime.now(datetime.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - CLOCK_SKEW)
            .not_valid_after(self._now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, names: Iterable[str]) -> ServerCertificate:
        """A server certificate for `names` (DNS names or IP literals), signed by this authority."""
        sans: list[x509.GeneralName] = []
        for name in dict.fromkeys(names):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        if not sans:
            raise ValueError("a server certificate needs at least one name")
        key = ec.generate_private_key(ec.SECP256R1())
        ca_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(sans[0].value))]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - CLOCK_SKEW)
            .not_valid_after(self._now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(ca_key_id, critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return ServerCertificate(
            chain_pem=certificate.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


def public_roots_pem() -> bytes:
    """The public roots HTTPS clients trust by default (certifi's, as botocore and requests use)."""
    return Path(certifi.where()).read_bytes()


def trust_bundle(authority_pem: bytes, public_roots: bytes) -> bytes:
    """A CA bundle trusting the local authority and the public roots (other HTTPS still verifies)."""
    return authority_pem.rstrip(b"\n") + b"\n" + public_roots


def server_context(certificate: ServerCertificate, folder: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context for `certificate`; its key touches `folder` only while loading."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # API Gateway's own minimum
    descriptor, name = tempfile.mkstemp(prefix="server-", suffix=".pem", dir=folder)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(certificate.key_pem + certificate.chain_pem)
        context.load_cert_chain(name)
    finally:
        os.unlink(name)
    return context
