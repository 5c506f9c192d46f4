"""A throw-away certificate authority, made with `cryptography`: for `scopegate demo --tls`
and for the tests of TLS. Never for production: the keys are written unencrypted, next to
the certificates.

Usage::

    ca = LocalAuthority()
    files = ca.issue_server(tmp_path, "localhost")   # files.cert, files.key, files.ca (PEM paths)
    files = ca.issue_server(tmp_path, "localhost", "127.0.0.1")   # one certificate, two names
    client = ca.issue_client(tmp_path, "app-1")      # client.cert, client.key (clientAuth)
    chained = ca.intermediate("sub CA").issue_server(tmp_path, "localhost")  # leaf + chain
    serial_number(files.cert.read_bytes())           # which certificate a file (or DER) holds
    server_context(files, client_ca=path)            # an `ssl` server context (a test upstream)

Issuing again with the same first name writes over the same files: that is how a test rotates
a server's certificate in place.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)
_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True)
class ServerFiles:
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class ClientFiles:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alternative(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_new_key(path: Path) -> Path:
    """A fresh private key at `path`: one that matches no certificate issued so far."""
    path.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    return path


def server_context(files: ServerFiles, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server context presenting `files`; with `client_ca`, one that requires a client
    certificate issued by a CA in that PEM bundle (mTLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def load_certificate(pem_or_der: bytes) -> x509.Certificate:
    """The first certificate of a PEM file's bytes, or a DER certificate."""
    if pem_or_der.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_certificate(pem_or_der)
    return x509.load_der_x509_certificate(pem_or_der)


def serial_number(pem_or_der: bytes) -> int:
    return load_certificate(pem_or_der).serial_number


def not_after(pem_or_der: bytes) -> float:
    """The certificate's notAfter as a Unix timestamp."""
    return load_certificate(pem_or_der).not_valid_after_utc.timestamp()


class LocalAuthority:
    """An ECDSA P-256 CA valid for 30 days unless told (what it issues: a day, unless told)."""

    __test__ = False  # the tests import it as TestAuthority: pytest must not collect it

    def __init__(
        self,
        name: str = "scopegate test CA",
        *,
        parent: LocalAuthority | None = None,
        valid_for: datetime.timedelta = 30 * DAY,
    ) -> None:
        """A root CA, or with `parent` an intermediate CA that `parent` signs."""
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self._name = _name(name)
        issuer_name = self._name if parent is None else parent._name
        issuer_key = self._key if parent is None else parent._key
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(issuer_name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + valid_for)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
            .sign(issuer_key, hashes.SHA256())
        )
        # What a server sends after its leaf: every CA between it and the root, root excluded.
        self.chain: list[x509.Certificate] = (
            [] if parent is None else [self.certificate, *parent.chain]
        )
        self.root: LocalAuthority = self if parent is None else parent.root

    def intermediate(self, name: str) -> LocalAuthority:
        """A CA that this one signs: what it issues needs the chain to verify."""
        return LocalAuthority(name, parent=self)

    @property
    def pem(self) -> bytes:
        """This CA's certificate, PEM-encoded."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        """This CA's certificate as a PEM file at `path` (a trust bundle, or a `client_ca`)."""
        path.write_bytes(self.pem)
        return path

    def _leaf(
        self,
        subject: str,
        key: PrivateKey,
        usage: x509.ObjectIdentifier,
        valid_for: datetime.timedelta,
        names: list[x509.GeneralName],
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + valid_for)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self._key, hashes.SHA256())

    def issue_server(
        self,
        directory: Path,
        host: str,
        *more_hosts: str,
        valid_for: datetime.timedelta = DAY,
        rsa_key: bool = False,
    ) -> ServerFiles:
        """A server certificate for `host` and `more_hosts` (DNS names or IP addresses), with its
        key (ECDSA P-256, or RSA-2048 with `rsa_key`) and the root CA, written as PEM files into
        `directory`, named after `host`. The certificate file holds the leaf, then the chain up
        to the root (root excluded)."""
        key: PrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if rsa_key
            else ec.generate_private_key(ec.SECP256R1())
        )
        names = [_alternative(name) for name in (host, *more_hosts)]
        certificate = self._leaf(host, key, ExtendedKeyUsageOID.SERVER_AUTH, valid_for, names)
        files = ServerFiles(
            directory / f"{host}.pem", directory / f"{host}.key", directory / "ca.pem"
        )
        chain = [certificate, *self.chain]
        files.cert.write_bytes(
            b"".join(each.public_bytes(serialization.Encoding.PEM) for each in chain)
        )
        files.key.write_bytes(_key_pem(key))
        self.root.write(files.ca)
        return files

    def issue_client(
        self, directory: Path, name: str, *, valid_for: datetime.timedelta = DAY
    ) -> ClientFiles:
        """A client certificate (clientAuth) for `name`, with its key, written as PEM files
        `NAME.client.pem` and `NAME.client.key` into `directory`."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self._leaf(name, key, ExtendedKeyUsageOID.CLIENT_AUTH, valid_for, [])
        files = ClientFiles(directory / f"{name}.client.pem", directory / f"{name}.client.key")
        files.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        files.key.write_bytes(_key_pem(key))
        return files
