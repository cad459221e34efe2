"""webhook/certs/bundle.py and `gpu-rightsizer certs generate`: SANs, chain, key sizes,
lifetimes, and what a re-run does."""

from __future__ import annotations

import datetime as dt
import shutil
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from webhook.certs.bundle import (
    TlsBundle,
    _pem_key,
    bundle_problem,
    ensure_cert_dir,
    make_ca,
    make_serving_cert,
    new_bundle,
    read_bundle,
    service_dns_names,
)
from webhook.certs.install import ca_bundle
from webhook.cli.main import main
from webhook.cli.serve import _self_signed

NAMES = service_dns_names("hook", "team-a")


def _load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def _generate(out, *extra):
    return main(["certs", "generate", "--service", "hook", "--namespace", "team-a", "--out", str(out), *extra])


def test_generate_makes_a_chain_for_the_service_names(tmp_path):
    assert _generate(tmp_path) == 0
    cert, ca = _load(tmp_path / "tls.crt"), _load(tmp_path / "ca.crt")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        "hook",
        "hook.team-a",
        "hook.team-a.svc",
        "hook.team-a.svc.cluster.local",
    ]
    assert cert.issuer == ca.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    for c in (cert, ca):
        assert isinstance(c.public_key(), ec.EllipticCurvePublicKey)
        assert c.public_key().curve.key_size >= 256
    now = dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(days=364) < cert.not_valid_after_utc - now <= dt.timedelta(days=366)
    assert cert.not_valid_after_utc <= ca.not_valid_after_utc
    assert bundle_problem(read_bundle(tmp_path), NAMES) is None
    for key in ("tls.key", "ca.key"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o600


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize("name", NAMES)
def test_openssl_verifies_the_chain_for_each_name(tmp_path, name):
    _generate(tmp_path)
    done = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(tmp_path / "ca.crt"),
            "-purpose",
            "sslserver",
            "-verify_hostname",
            name,
            str(tmp_path / "tls.crt"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_rerun_keeps_a_good_certificate_and_force_renews(tmp_path, capsys):
    _generate(tmp_path)
    first = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    _generate(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == first
    assert "kept the certificate" in capsys.readouterr().out
    _generate(tmp_path, "--force")
    assert (tmp_path / "ca.crt").read_bytes() != first["ca.crt"]
    assert bundle_problem(read_bundle(tmp_path), NAMES) is None


def test_rerun_for_another_service_replaces_it(tmp_path):
    _generate(tmp_path)
    main(["certs", "generate", "--service", "other", "--namespace", "team-a", "--out", str(tmp_path)])
    assert bundle_problem(read_bundle(tmp_path), service_dns_names("other", "team-a")) is None
    assert bundle_problem(read_bundle(tmp_path), NAMES) is not None


def test_a_certificate_close_to_expiry_is_renewed(tmp_path):
    ca_key, ca = make_ca()
    key, cert = make_serving_cert(ca_key, ca, NAMES, days=10)
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(_pem_key(key))
    (tmp_path / "ca.crt").write_bytes(ca.public_bytes(Encoding.PEM))
    assert "within 30 days" in bundle_problem(read_bundle(tmp_path), NAMES)
    _, reason = ensure_cert_dir(tmp_path, NAMES)
    assert "within 30 days" in reason
    assert bundle_problem(read_bundle(tmp_path), NAMES) is None


def test_bundle_problem_names_the_fault():
    good, _ = new_bundle(NAMES)
    other, _ = new_bundle(NAMES)
    assert bundle_problem(good, NAMES) is None
    assert "not the key" in bundle_problem(TlsBundle(good.cert, other.key, good.ca_cert), NAMES)
    assert "does not verify" in bundle_problem(TlsBundle(good.cert, good.key, other.ca_cert), NAMES)
    assert "does not verify for 'x.team-a.svc'" in bundle_problem(good, ["x.team-a.svc"])
    assert "unreadable" in bundle_problem(TlsBundle(b"junk", good.key, good.ca_cert), NAMES)


def test_ca_bundle_keeps_the_previous_ca_during_rotation():
    new, _ = new_bundle(NAMES)
    old, _ = new_bundle(NAMES)
    both = ca_bundle(new.ca_cert, old.ca_cert)
    assert x509.load_pem_x509_certificates(both) == [
        x509.load_pem_x509_certificate(new.ca_cert),
        x509.load_pem_x509_certificate(old.ca_cert),
    ]
    assert ca_bundle(new.ca_cert, new.ca_cert) == new.ca_cert.strip() + b"\n"
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3651)
    assert ca_bundle(new.ca_cert, old.ca_cert, now=later) == new.ca_cert.strip() + b"\n"
    assert ca_bundle(new.ca_cert, b"not pem") == new.ca_cert.strip() + b"\n"


def test_serve_reuses_its_self_signed_certificate(tmp_path):
    cert, key, ca, made = _self_signed(str(tmp_path), "0.0.0.0")
    assert made is not None
    before = (tmp_path / "tls.crt").read_bytes(), (tmp_path / "ca.crt").read_bytes()
    cert2, _, _, made2 = _self_signed(str(tmp_path), "0.0.0.0")
    assert made2 is None and cert2 == cert
    assert ((tmp_path / "tls.crt").read_bytes(), (tmp_path / "ca.crt").read_bytes()) == before
    # A different host name is not covered: a new certificate that covers it.
    _, _, _, made3 = _self_signed(str(tmp_path), "webhook.example")
    assert "does not verify for 'webhook.example'" in made3


def test_install_without_files_says_what_to_do(tmp_path, capsys):
    assert main(["certs", "install", "--cert-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "tls.crt" in err and "certs generate" in err
