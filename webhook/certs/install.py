"""`certs install`: put a serving certificate into the cluster with the `kubernetes` client.

Two objects change, in this order:
1. the caBundle of every webhook in the MutatingWebhookConfiguration — the new CA *plus*
   the CA the Secret holds now (while it is still valid), so the API server trusts both the
   certificate the servers present now and the one they reload next;
2. the kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt), which the servers' mounted
   volume picks up and hot-reload.
Each write happens only when the content differs, so a re-run changes nothing. Objects
are read and written as raw JSON (``_preload_content=False``), not client models.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field

from cryptography import x509

from webhook.certs.bundle import TlsBundle, bundle_problem, new_bundle
from webhook.core.errors import RightsizerError

# bandit B105 takes this Secret type name for a password.
SECRET_TYPE = "kubernetes.io/tls"  # nosec B105


class InstallError(RightsizerError, RuntimeError):
    """A clear, user-facing reason `certs install` could not finish."""


@dataclass
class InstallReport:
    actions: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.actions.append(line)


def load_clients(kubeconfig: str | None):
    """(CoreV1Api, AdmissionregistrationV1Api): from --kubeconfig, else in-cluster, else
    the default kubeconfig ($KUBECONFIG or ~/.kube/config)."""
    from kubernetes import client, config

    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    api = client.ApiClient()
    return client.CoreV1Api(api), client.AdmissionregistrationV1Api(api)


def _raw(call, *args, **kwargs) -> dict | None:
    """Call a client method for raw JSON; None on 404."""
    from kubernetes.client.exceptions import ApiException

    try:
        response = call(*args, _preload_content=False, **kwargs)
    except ApiException as err:
        if err.status == 404:
            return None
        raise InstallError(f"{err.status} {err.reason}: {(err.body or b'')[:500]!r}") from None
    return json.loads(response.data)


def _write(call, *args, **kwargs) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        call(*args, _preload_content=False, **kwargs)
    except ApiException as err:
        raise InstallError(f"{err.status} {err.reason}: {(err.body or b'')[:500]!r}") from None


def secret_bundle(secret: dict | None) -> TlsBundle | None:
    data = (secret or {}).get("data") or {}
    try:
        return TlsBundle(*(base64.b64decode(data[k]) for k in ("tls.crt", "tls.key", "ca.crt")))
    except (KeyError, ValueError):
        return None


def ca_bundle(new_ca: bytes, old_ca: bytes | None, now: dt.datetime | None = None) -> bytes:
    """The new CA, followed by the old CA certificates that are still valid and differ."""
    now = now or dt.datetime.now(dt.timezone.utc)
    out = [new_ca.strip() + b"\n"]
    new_certs = x509.load_pem_x509_certificates(new_ca)
    if old_ca:
        try:
            old_certs = x509.load_pem_x509_certificates(old_ca)
        except ValueError:
            old_certs = []
        from cryptography.hazmat.primitives.serialization import Encoding

        for cert in old_certs:
            if cert not in new_certs and cert.not_valid_after_utc > now:
                out.append(cert.public_bytes(Encoding.PEM))
    return b"".join(out)


def _trusts(encoded: str | None, ca_pem: bytes) -> bool:
    """Whether a caBundle (base64) already holds every certificate of ``ca_pem``."""
    if not encoded:
        return False
    try:
        have = x509.load_pem_x509_certificates(base64.b64decode(encoded))
    except ValueError:
        return False
    return all(c in have for c in x509.load_pem_x509_certificates(ca_pem))


def _patch_ca_bundle(admreg, name: str, bundle: bytes, new_ca: bytes, report: InstallReport) -> None:
    config = _raw(admreg.read_mutating_webhook_configuration, name)
    if config is None:
        raise InstallError(
            f"MutatingWebhookConfiguration {name!r} not found; apply the manifests first "
            "(kubectl apply -k manifests/overlays/self-signed)"
        )
    encoded = base64.b64encode(bundle).decode()
    ops: list[dict] = []
    for i, hook in enumerate(config.get("webhooks") or []):
        # Already trusting the new CA: leave it (a re-run must not drop the previous CA
        # while servers may still present a certificate it signed).
        if _trusts((hook.get("clientConfig") or {}).get("caBundle"), new_ca):
            continue
        # The test op makes the patch fail, not misfire, if the list changed meanwhile.
        ops.append({"op": "test", "path": f"/webhooks/{i}/name", "value": hook["name"]})
        ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": encoded})
    if not config.get("webhooks"):
        raise InstallError(f"MutatingWebhookConfiguration {name!r} has no webhooks")
    if not ops:
        report.add(f"mutatingwebhookconfiguration/{name}: caBundle unchanged")
        return
    _write(admreg.patch_mutating_webhook_configuration, name=name, body=ops)
    report.add(f"mutatingwebhookconfiguration/{name}: caBundle set on {len(ops) // 2} webhook(s)")


def _put_secret(
    core, namespace: str, name: str, existing: dict | None, bundle: TlsBundle, report: InstallReport
) -> None:
    data = {k: base64.b64encode(v).decode() for k, v in bundle.as_secret_data().items()}
    if existing is None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": SECRET_TYPE,
            "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/name": "gpu-rightsizer"}},
            "data": data,
        }
        _write(core.create_namespaced_secret, namespace=namespace, body=body)
        report.add(f"secret/{name}: created")
        return
    if existing.get("type") != SECRET_TYPE:
        raise InstallError(
            f"secret/{name} in {namespace} has type {existing.get('type')!r}, not {SECRET_TYPE!r}; "
            "a Secret's type cannot change: delete it and re-run"
        )
    if all((existing.get("data") or {}).get(k) == v for k, v in data.items()):
        report.add(f"secret/{name}: unchanged")
        return
    # A merge patch of the three keys, with the resourceVersion read above: a concurrent
    # writer makes this fail (409) rather than be overwritten.
    patch = {"metadata": {"resourceVersion": existing["metadata"]["resourceVersion"]}, "data": data}
    _write(core.patch_namespaced_secret, name=name, namespace=namespace, body=patch)
    report.add(f"secret/{name}: updated")


def install(
    core, admreg, *, namespace: str, secret: str, webhook_config: str, names: list[str], bundle: TlsBundle | None
) -> InstallReport:
    """Install ``bundle`` (or, when None, keep the Secret's own certificate if it still
    serves ``names``, else make a new one) and point the webhook's caBundle at it."""
    report = InstallReport()
    existing = _raw(core.read_namespaced_secret, name=secret, namespace=namespace)
    current = secret_bundle(existing)
    if bundle is None:
        problem = "no usable certificate in the Secret" if current is None else bundle_problem(current, names)
        if problem is None:
            bundle = current
            report.add(f"secret/{secret}: its certificate still serves {names[-1]}; kept")
        else:
            bundle, _ = new_bundle(names)
            report.add(f"generated a new CA and serving certificate ({problem})")
    else:
        problem = bundle_problem(bundle, names, renew_before=dt.timedelta(0))
        if problem is not None:
            raise InstallError(f"refusing to install: {problem}")
    old_ca = current.ca_cert if current is not None else None
    _patch_ca_bundle(admreg, webhook_config, ca_bundle(bundle.ca_cert, old_ca), bundle.ca_cert, report)
    _put_secret(core, namespace, secret, existing, bundle, report)
    return report
