"""`gpu-rightsizer certs generate|install`: the webhook's serving certificate.

generate: a CA and a serving certificate for the Service's DNS names, in --out (reused
          when the one there still serves those names for 30 days or more; --force renews).
install:  the kubernetes.io/tls Secret and the webhook's caBundle, via the API server.
"""

from __future__ import annotations

import sys
from pathlib import Path

from webhook.certs.bundle import CA_DAYS, SERVING_DAYS, ensure_cert_dir, not_valid_after, read_bundle, service_dns_names

DEFAULT_SERVICE = "gpu-rightsizer"
DEFAULT_NAMESPACE = "gpu-rightsizer-system"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    gen = sub.add_parser(
        "generate",
        help="make a CA and a serving certificate for the Service",
        description=f"CA ({CA_DAYS} days) and serving certificate ({SERVING_DAYS} days), "
        "ECDSA P-256, SANs = the Service's DNS names.",
    )
    _service_args(gen)
    gen.add_argument("--out", default="certs", help="output directory (default: certs/)")
    gen.add_argument("--force", action="store_true", help="make new ones even if the existing ones are still good")
    inst = sub.add_parser(
        "install",
        help="create/update the TLS Secret and patch the webhook caBundle",
        description="Create or update the kubernetes.io/tls Secret and patch the caBundle "
        "of every webhook in the MutatingWebhookConfiguration. Safe to re-run.",
    )
    _service_args(inst)
    inst.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG/~/.kube/config)")
    inst.add_argument("--secret", default="gpu-rightsizer-tls", help="TLS Secret name (default: gpu-rightsizer-tls)")
    inst.add_argument(
        "--webhook-config", default="gpu-rightsizer", help="MutatingWebhookConfiguration name (default: gpu-rightsizer)"
    )
    source = inst.add_mutually_exclusive_group()
    source.add_argument(
        "--cert-dir", default="certs", help="install tls.crt, tls.key, ca.crt from here (default: certs/)"
    )
    source.add_argument(
        "--generate",
        action="store_true",
        help="keep the Secret's certificate if it still serves the Service, else make a new one "
        "in memory (what the in-cluster Job runs)",
    )


def _service_args(parser) -> None:
    parser.add_argument("--service", default=DEFAULT_SERVICE, help=f"Service name (default: {DEFAULT_SERVICE})")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help=f"its namespace (default: {DEFAULT_NAMESPACE})")


def _generate(args) -> int:
    names = service_dns_names(args.service, args.namespace)
    paths, reason = ensure_cert_dir(args.out, names, force=args.force)
    out = Path(args.out).resolve()
    if reason is None:
        print(
            f"certs: kept the certificate in {out}: it serves {', '.join(names)} "
            f"until {not_valid_after(paths.cert):%Y-%m-%d}"
        )
    else:
        print(
            f"certs: wrote a new CA and serving certificate to {out} ({reason}); "
            f"SANs: {', '.join(names)}; valid until {not_valid_after(paths.cert):%Y-%m-%d}"
        )
    print(f"certs: caBundle = base64 of {paths.ca_cert}")
    return 0


def _install(args) -> int:
    from webhook.certs.install import InstallError, install, load_clients

    names = service_dns_names(args.service, args.namespace)
    bundle = None
    if not args.generate:
        try:
            bundle = read_bundle(args.cert_dir)
        except OSError as err:
            print(
                f"gpu-rightsizer: certs install: {err.filename}: {err.strerror}; run "
                f"`gpu-rightsizer certs generate --out {args.cert_dir}` first, or use --generate",
                file=sys.stderr,
            )
            return 2
    try:
        core, admreg = load_clients(args.kubeconfig)
        report = install(
            core,
            admreg,
            namespace=args.namespace,
            secret=args.secret,
            webhook_config=args.webhook_config,
            names=names,
            bundle=bundle,
        )
    except InstallError as err:
        print(f"gpu-rightsizer: certs install: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - kubeconfig/connection problems: one clear line
        print(f"gpu-rightsizer: certs install: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    for line in report.actions:
        print(f"certs: {line}")
    return 0


def run(args) -> int:
    return _generate(args) if args.certs_command == "generate" else _install(args)
