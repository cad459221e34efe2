"""Certificates: a CA and a serving certificate signed by it, made with `cryptography`.

The API server verifies the webhook's certificate against the caBundle of the
webhook configuration, so we make a small CA (its certificate is the caBundle) and a
serving certificate whose SANs cover every name the API server may dial.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVING_DAYS = 365


@dataclass(frozen=True)
class CertPaths:
    ca_cert: Path
    cert: Path
    key: Path


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use for a Service-backed webhook."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256: as strong as RSA-3072, and its handshakes are far cheaper, which matters
    # when every pod create may pay one.
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # Backdated a little so a slightly skewed clock never sees "not yet valid".
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**{**flags, **allowed})


def make_ca(common_name: str = "gpu-rightsizer-ca", days: int = CA_DAYS):
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(name, name, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_serving_cert(ca_key, ca_cert, names: list[str], days: int = SERVING_DAYS):
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), days)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write(path: Path, data: bytes, private: bool = False) -> None:
    # Write then rename, so a server watching the file never reads half of it.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def write_ca_and_serving_cert(out_dir: str | Path, names: list[str]) -> CertPaths:
    """Make a new CA and a serving certificate for ``names`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca()
    key, cert = make_serving_cert(ca_key, ca_cert, names)
    paths = CertPaths(out / "ca.crt", out / "tls.crt", out / "tls.key")
    _write(out / "ca.key", _pem_key(ca_key), private=True)
    _write(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(paths.key, _pem_key(key), private=True)
    _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM))
    return paths


def not_valid_after(cert_file: str | Path) -> dt.datetime:
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    return cert.not_valid_after_utc


# --- checking and reusing what is already there --------------------------------------

# A serving certificate with less than this left is replaced rather than reused, so a
# re-run of `certs generate`/`certs install --generate` a month before expiry renews it.
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsBundle:
    """PEM bytes of a serving certificate, its key and the CA that signed it, as the
    kubernetes.io/tls Secret holds them (tls.crt, tls.key, ca.crt)."""

    cert: bytes
    key: bytes
    ca_cert: bytes

    def as_secret_data(self) -> dict[str, bytes]:
        return {"tls.crt": self.cert, "tls.key": self.key, "ca.crt": self.ca_cert}


def bundle_problem(
    bundle: TlsBundle, names: list[str], renew_before: dt.timedelta = RENEW_BEFORE, now: dt.datetime | None = None
) -> str | None:
    """Why ``bundle`` cannot serve ``names`` for at least ``renew_before`` (None when it can):
    the chain must verify against its CA for every name, and the key must match."""
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        cert = x509.load_pem_x509_certificate(bundle.cert)
        cas = x509.load_pem_x509_certificates(bundle.ca_cert)
        key = serialization.load_pem_private_key(bundle.key, password=None)
    except (ValueError, TypeError) as err:
        return f"unreadable PEM: {err}"
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        return "tls.key is not the key of tls.crt"
    if cert.not_valid_after_utc - now < renew_before:
        return f"the certificate expires {cert.not_valid_after_utc.isoformat()}, within {renew_before.days} days"
    for ca in cas:
        if ca.not_valid_after_utc - now < renew_before:
            return f"the CA expires {ca.not_valid_after_utc.isoformat()}, within {renew_before.days} days"
    builder = PolicyBuilder().store(Store(cas)).time(now)
    for name in names:
        try:
            subject = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            subject = x509.DNSName(name)
        try:
            builder.build_server_verifier(subject).verify(cert, [])
        except VerificationError as err:
            return f"the certificate does not verify for {name!r} against ca.crt: {err}"
    return None


def new_bundle(names: list[str]) -> tuple[TlsBundle, bytes]:
    """A new CA and a serving certificate for ``names``; returns (bundle, CA key PEM)."""
    ca_key, ca_cert = make_ca()
    key, cert = make_serving_cert(ca_key, ca_cert, names)
    pem = serialization.Encoding.PEM
    return TlsBundle(cert.public_bytes(pem), _pem_key(key), ca_cert.public_bytes(pem)), _pem_key(ca_key)


def read_bundle(cert_dir: str | Path) -> TlsBundle:
    """tls.crt, tls.key and ca.crt from ``cert_dir``; OSError when one is missing."""
    d = Path(cert_dir)
    return TlsBundle((d / "tls.crt").read_bytes(), (d / "tls.key").read_bytes(), (d / "ca.crt").read_bytes())


def ensure_cert_dir(cert_dir: str | Path, names: list[str], force: bool = False) -> tuple[CertPaths, str | None]:
    """Reuse the certificate in ``cert_dir`` when it still serves ``names`` (so a caBundle
    registered from it stays valid), else write a new CA and certificate. Returns the
    paths and why a new one was made (None when reused)."""
    out = Path(cert_dir)
    paths = CertPaths(out / "ca.crt", out / "tls.crt", out / "tls.key")
    if force:
        reason: str | None = "--force"
    else:
        try:
            reason = bundle_problem(read_bundle(out), names)
        except OSError:
            reason = f"no certificate in {out}"
    if reason is None:
        return paths, None
    return write_ca_and_serving_cert(out, names), reason
