"""The project image, built from the repository's Dockerfile as a user would build it.

No registry is reachable here, so the Dockerfile's `FROM python:3.11-slim` is satisfied by
a stand-in made from Debian's packages (build-node.sh: mmdebstrap of bookworm, whose
python3 is 3.11), committed into buildah's local storage under that exact name. Then
`buildah bud` builds the unchanged Dockerfile daemonlessly and the result is written as
an OCI archive the node's containerd imports.

Archives are cached by the content of what the Dockerfile copies, so an unchanged tree
reuses its image.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "docker.io/library/python:3.11-slim"
# What the Dockerfile copies: the image changes exactly when one of these does.
BUILD_INPUTS = ("Dockerfile", "pyproject.toml", "README.md", "webhook")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class ImageSize:
    total: int  # bytes, uncompressed layers
    base: int  # of which the base image's

    def __str__(self) -> str:
        mb = 1_000_000
        return (
            f"{self.total / mb:.0f} MB uncompressed ({self.base / mb:.0f} MB base image, "
            f"{(self.total - self.base) / mb:.0f} MB the project's layers)"
        )


@dataclass(frozen=True)
class BuiltImage:
    name: str  # e.g. localhost/gpu-rightsizer:3f2a...
    archive: Path  # OCI archive holding it under `name`
    size: ImageSize
    build_seconds: float  # 0.0 when the cached archive was reused


def source_digest(repo: Path = REPO) -> str:
    digest = hashlib.sha256()
    for top in BUILD_INPUTS:
        path = repo / top
        files = (
            [path]
            if path.is_file()
            else sorted(
                p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            )
        )
        for f in files:
            digest.update(str(f.relative_to(repo)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _run(*argv: str, timeout: float = 1800) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ... exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done.stdout


def ensure_base_image(rootfs_tar: Path) -> None:
    """Commit the stand-in python:3.11-slim into buildah's storage unless it is there."""
    present = subprocess.run(["buildah", "images", "--quiet", BASE_IMAGE], capture_output=True, text=True)
    if present.returncode == 0 and present.stdout.strip():
        return
    container = _run("buildah", "from", "scratch").strip()
    try:
        _run("buildah", "add", "--quiet", container, str(rootfs_tar), "/")
        _run(
            "buildah",
            "config",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env",
            "LANG=C.UTF-8",
            "--cmd",
            "python3",
            container,
        )
        _run("buildah", "commit", "--quiet", container, BASE_IMAGE)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)


def build_project_image(cache_dir: Path, rootfs_tar: Path, log: Path) -> BuiltImage:
    """Build the Dockerfile (or reuse the archive of an identical tree)."""
    tag = source_digest()
    name = f"localhost/gpu-rightsizer:{tag}"
    archive = cache_dir / f"gpu-rightsizer-{tag}.oci.tar"
    size_file = archive.with_suffix(".size")
    if archive.is_file() and size_file.is_file():
        total, base = (int(n) for n in size_file.read_text().split())
        return BuiltImage(name, archive, ImageSize(total, base), 0.0)
    ensure_base_image(rootfs_tar)
    started = time.monotonic()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        # --isolation chroot: crun/runc refuse this hybrid-cgroup host inside buildah.
        # pip inside the build verifies PyPI with the machine's CA bundle.
        done = subprocess.run(
            [
                "buildah",
                "bud",
                "--pull=never",
                "--network",
                "host",
                "--isolation",
                "chroot",
                "--layers=false",
                "-v",
                f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
                "-t",
                name,
                str(REPO),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
        )
    if done.returncode != 0:
        raise RuntimeError(f"buildah bud of the Dockerfile failed; see {log}:\n{log.read_text()[-4000:]}")
    size = ImageSize(_layer_bytes(name), _layer_bytes(BASE_IMAGE))
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    _run("buildah", "push", "--quiet", name, f"oci-archive:{partial}:{name}")
    partial.rename(archive)
    size_file.write_text(f"{size.total} {size.base}")
    subprocess.run(["buildah", "rmi", name], capture_output=True)
    return BuiltImage(name, archive, size, time.monotonic() - started)


def _layer_bytes(name: str) -> int:
    """Sum of the image's layer sizes in buildah's storage (uncompressed)."""
    manifest = json.loads(json.loads(_run("buildah", "inspect", "--type", "image", name))["Manifest"])
    return sum(layer.get("size", 0) for layer in manifest.get("layers") or [])
