"""The cert-manager overlay against cert-manager's real CRDs, on the real API server.

cert-manager itself cannot run here: its binaries' main packages live in the modules
github.com/cert-manager/cert-manager/cmd/{controller,webhook,cainjector}, which the Go module
proxy does not serve (`404 Not Found` for v1.21.2), and no image registry is reachable. What
can be checked is that every object the overlay adds is accepted by the API server under the
CRDs cert-manager v1.21.2 installs (taken from its module, `deploy/crds/`), with the rest of
the install, in a server-side dry run.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml
from controlplane import wait_for

CERT_MANAGER = "github.com/cert-manager/cert-manager@v1.21.2"
REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("GPU_RIGHTSIZER_CACHE", Path.home() / ".cache" / "gpu-rightsizer"))


def cert_manager_crds() -> list[Path]:
    done = subprocess.run(
        ["go", "mod", "download", "-json", CERT_MANAGER],
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",
        env={**os.environ, "GOMODCACHE": str(CACHE / "gomod"), "GOFLAGS": "-mod=mod", "GO111MODULE": "on"},
    )
    info = json.loads(done.stdout or "{}")
    assert done.returncode == 0 and "Error" not in info, done.stdout + done.stderr
    crds = sorted((Path(info["Dir"]) / "deploy" / "crds").glob("*.yaml"))
    assert len(crds) >= 6, crds
    return crds


def test_cert_manager_overlay_is_accepted_under_the_real_crds(control_plane):
    for crd in cert_manager_crds():
        control_plane.kubectl("apply", "--server-side", "-f", str(crd))
    for name in ("issuers.cert-manager.io", "certificates.cert-manager.io"):
        wait_for(
            lambda n=name: (
                control_plane.kubectl(
                    "wait", "--for=condition=Established", f"crd/{n}", "--timeout=30s", check=False
                ).returncode
                == 0
            ),
            60,
            message=f"CRD {name} Established",
        )
    rendered = control_plane.kubectl("kustomize", str(REPO / "manifests" / "overlays" / "cert-manager")).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered) if d]
    assert kinds.count("Certificate") == 2 and kinds.count("Issuer") == 2, kinds
    # The namespace must exist for the namespaced objects' dry run.
    control_plane.kubectl("create", "namespace", "gpu-rightsizer-system", check=False)
    done = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=False)
    assert done.returncode == 0, done.stderr
    for line in (
        "issuer.cert-manager.io/gpu-rightsizer-selfsigned",
        "issuer.cert-manager.io/gpu-rightsizer-ca",
        "certificate.cert-manager.io/gpu-rightsizer-ca",
        "certificate.cert-manager.io/gpu-rightsizer-serving",
    ):
        assert line in done.stdout, done.stdout
    # A field cert-manager does not know is refused: the CRDs' schemas are really applied.
    bad = rendered.replace("rotationPolicy: Always", "rotationPolicy: Always\n    notAField: 1")
    refused = control_plane.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=bad, check=False)
    assert refused.returncode != 0 and "notAField" in refused.stderr, refused.stderr
