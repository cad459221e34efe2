"""A one-node Kubernetes v1.36.3 cluster that really runs pods, for the real-node tier.

Everything runs inside a network namespace this module makes (`NetworkNamespace`): its
own loopback, a bridge `gpurs0` with the gateway 10.88.0.1/16, kube-proxy's iptables
chains and the pods' interfaces. The API server binds the gateway, so pods reach it
through the `kubernetes` Service and it reaches the webhook's pods on the bridge. No
address outside the namespace is used, and deleting the namespace removes every route,
chain and interface the cluster made.

The pytest process itself enters the namespace (`NetworkNamespace.entered`, setns(2) on
the main thread) for the tier's duration, so kubectl, the project's own CLI and the
tests' HTTP clients reach the API server unchanged; children inherit the namespace.
Mounts stay in the host's mount namespace, where kubelet and containerd share them.

    with RealNode(bins, workdir, labels=..., resources={"nvidia.com/mig-1g.10gb": 3}) as node:
        node.plane.kubectl("get", "nodes")

Facts this relies on, each seen on this machine kind: ../shared/kubernetes-notes.md,
section "A real node" (restrict_oom_score_adj, cgroup v1 kubelet settings, runc 1.5.3,
the pause image, --kubelet-preferred-address-types, --enable-aggregator-routing).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from controlplane import ControlPlane, ManagedProcess, stop_all, wait_for  # noqa: E402

POD_CIDR = "10.88.0.0/16"
GATEWAY = "10.88.0.1"
BRIDGE = "gpurs0"
SERVICE_CIDR = "10.96.0.0/24"
CNI_BIN_DIR = "/usr/lib/cni"
# containerd 2.x's default sandbox image; ours is built locally (no registry here).
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
CLONE_NEWNET = 0x40000000
# One whole GPU (nvidia.com/gpu, for pods the webhook leaves alone) and one MIG GPU with
# 3 x 1g.10gb + 1 x 3g.40gb (slices 0, 1, 2 and 4-7: a valid H100 placement).
LAYOUT = {"nvidia.com/gpu": 1, "nvidia.com/mig-1g.10gb": 3, "nvidia.com/mig-3g.40gb": 1}
# The kubelet's device plugin directory is fixed, whatever its --root-dir
# (k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1 DevicePluginPath); it also holds the device
# manager's checkpoint of allocations, which must not outlive the node.
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")


@dataclass(frozen=True)
class NodeBinaries:
    """Where build-node.sh and build-control-plane.sh put things."""

    k8s: Path  # etcd, kube-apiserver, ..., kubelet, kube-proxy, kubectl
    runtime: Path  # containerd, containerd-shim-runc-v2, ctr, runc
    tools: Path  # fake-nvidia-device-plugin, fake-nvidia-dra-plugin, pause


def _run(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result


class NetworkNamespace:
    """A named network namespace with the cluster's bridge, entered by this process."""

    def __init__(self, name: str):
        self.name = name
        self.path = Path("/run/netns") / name
        self._host_fd: int | None = None

    def create(self) -> None:
        _run("ip", "netns", "add", self.name)
        for cmd in (
            ["link", "set", "lo", "up"],
            ["link", "add", BRIDGE, "type", "bridge"],
            ["addr", "add", f"{GATEWAY}/16", "dev", BRIDGE],
            ["link", "set", BRIDGE, "up"],
        ):
            _run("ip", "-n", self.name, *cmd)

    def enter(self) -> None:
        """Move this thread (pytest's main thread) into the namespace."""
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self._host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.path}")
        finally:
            os.close(fd)

    def leave(self) -> None:
        if self._host_fd is None:
            return
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        if libc.setns(self._host_fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back to the host's network namespace")
        os.close(self._host_fd)
        self._host_fd = None

    def delete(self) -> None:
        _run("ip", "netns", "delete", self.name, check=False)


def unmount_under(root: Path) -> None:
    """Unmount everything mounted at or below `root`, deepest first (kubelet's volumes,
    containerd's rootfs overlays and the pods' network namespaces stay mounted after their
    processes are killed)."""
    prefix = str(root.resolve())
    for _ in range(5):
        with open("/proc/self/mounts") as f:
            points = [line.split()[1].encode().decode("unicode_escape") for line in f]
        mine = sorted({p for p in points if p == prefix or p.startswith(prefix + "/")}, key=len, reverse=True)
        if not mine:
            return
        for point in mine:
            subprocess.run(["umount", "-l", point], capture_output=True)


def forget_device_allocations() -> None:
    (DEVICE_PLUGIN_DIR / "kubelet_internal_checkpoint").unlink(missing_ok=True)


def kill_cgroup_tree(cgroup_root: str) -> None:
    """SIGKILL every process left in the kubelet's cgroups (containers and their shims'
    children), then remove the cgroup directories, in every v1 hierarchy."""
    base = Path("/sys/fs/cgroup")
    for hierarchy in base.iterdir() if base.is_dir() else ():
        top = hierarchy / cgroup_root.strip("/")
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                for pid in procs.read_text().split():
                    os.kill(int(pid), signal.SIGKILL)
        for directory in sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True) + [
            top
        ]:
            with contextlib.suppress(OSError):
                directory.rmdir()


@dataclass
class RealNode:
    """etcd, the control plane, containerd, kubelet, kube-proxy and the fake NVIDIA device
    plugin, in one network namespace; `plane` is the tests' handle (kubectl, apply, ...)."""

    bins: NodeBinaries
    workdir: Path
    node_name: str = "gpu-node-1"
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[str] = ()
    resources: Mapping[str, int] = field(default_factory=dict)
    netns_name: str = field(default_factory=lambda: f"gpurs-node-{os.getpid()}")
    plane: ControlPlane | None = None
    processes: list[ManagedProcess] = field(default_factory=list)
    device_plugin: ManagedProcess | None = None
    dra_plugin: ManagedProcess | None = None
    startup_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.netns = NetworkNamespace(self.netns_name)
        # The kubelet's default cgroup root ("/", pods under /kubepods), as the notes ran it;
        # a custom root must exist in every v1 hierarchy beforehand (cpuset's included).
        self.pods_cgroup = "kubepods"
        self.containerd_socket = self.workdir / "containerd" / "containerd.sock"
        self.kubelet_dir = self.workdir / "kubelet"
        # containerd's only CDI spec directory (not the host's /var/run/cdi, which other
        # node tiers on this machine would share); the DRA plugin writes its specs here.
        self.cdi_dir = self.workdir / "cdi-specs"
        self.logs = self.workdir / "logs"

    # ---- lifecycle

    def __enter__(self) -> RealNode:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> RealNode:
        started = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        self.netns.create()
        self.netns.enter()
        try:
            self.plane = ControlPlane(
                self.bins.k8s,
                address=GATEWAY,
                keep_workdir=True,
                apiserver_args=[
                    # Webhook Services are called at their endpoints' IPs (on the bridge).
                    "--enable-aggregator-routing=true",
                    # `kubectl logs`: the kubelet cannot resolve its own node name here.
                    "--kubelet-preferred-address-types=InternalIP",
                    "--service-cluster-ip-range",
                    SERVICE_CIDR,
                ],
                # A real kubelet: node lifecycle removes the not-ready taint when it is Ready.
                disabled_controllers=("cloud-node-lifecycle", "service-lb-controller", "node-route-controller"),
            )
            self.plane.start()
            self._start_containerd()
            self._import_pause_image()
            self._start_kubelet()
            self._start_kube_proxy()
            self.wait_ready()
        except BaseException:
            with contextlib.suppress(Exception):
                sys.stderr.write(self.log_tails())
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Tear everything down, whatever state it is in: processes (device plugin,
        kube-proxy, kubelet, containerd), the containers left behind, mounts, the control
        plane, the network namespace (with its bridge, pod interfaces and iptables chains)."""
        if self.device_plugin is not None:
            stop_all([self.device_plugin])
            self.device_plugin = None
        self.stop_dra_plugin()
        stop_all(list(reversed(self.processes)))
        self.processes.clear()
        kill_cgroup_tree(self.pods_cgroup)
        # containerd's shims are reparented to init and outlive the daemon.
        subprocess.run(
            ["pkill", "-KILL", "-f", f"containerd-shim-runc-v2 .*-address {self.containerd_socket}"],
            capture_output=True,
        )
        unmount_under(self.workdir)
        forget_device_allocations()
        if self.plane is not None:
            self.plane.stop()
            if self.plane.workdir:
                shutil.rmtree(self.plane.workdir, ignore_errors=True)
            self.plane = None
        self.netns.leave()
        self.netns.delete()

    def log_tails(self, lines: int = 30) -> str:
        parts = [p.log_tail(lines) for p in self.processes]
        if self.device_plugin is not None:
            parts.append(self.device_plugin.log_tail(lines))
        if self.dra_plugin is not None:
            parts.append(self.dra_plugin.log_tail(lines))
        if self.plane is not None:
            parts.append(self.plane.log_tails(lines))
        return "\n\n".join(parts)

    def check_alive(self) -> None:
        for p in self.processes:
            p.check_alive()
        if self.plane is not None:
            self.plane.check_alive()

    def _spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> ManagedProcess:
        process = ManagedProcess.start(
            name, argv, self.logs / f"{name}.log", env={**os.environ, **(env or {})}, cwd=self.workdir
        )
        self.processes.append(process)
        return process

    # ---- containerd

    def _start_containerd(self) -> None:
        root = self.workdir / "containerd"
        cni = self.workdir / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        (cni / "net.d" / "10-gpurs.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "gpurs",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            # No masquerade and routes only for the pod and service ranges: nothing
                            # a pod sends has anywhere to go outside the namespace.
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": str(cni / "ipam"),
                                "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                                "routes": [{"dst": POD_CIDR}, {"dst": SERVICE_CIDR}],
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=1,
            )
        )
        config = root / "config.toml"
        root.mkdir(parents=True, exist_ok=True)
        cri = "plugins.'io.containerd.cri.v1.runtime'"
        config.write_text(f"""version = 3
root = "{root / "root"}"
state = "{root / "state"}"

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{self.containerd_socket}.ttrpc"

[{cri}]
  # This VM refuses lowering a process's oom_score_adj, and every sandbox asks for -998.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state dir, removed with it.
  netns_mounts_under_state_dir = true
  # CDI is always on in containerd 2.x (its config migration drops `enable_cdi`: "CDI is
  # always enabled"); the default spec dirs are /etc/cdi and /var/run/cdi
  # (internal/cri/config/config_unix.go). The DRA plugin's specs go to the node's own dir.
  cdi_spec_dirs = ["{self.cdi_dir}"]

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{self.bins.runtime / "runc"}"
  SystemdCgroup = false

[{cri}.cni]
  bin_dirs = ["{CNI_BIN_DIR}"]
  conf_dir = "{cni / "net.d"}"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "{PAUSE_IMAGE}"
""")
        containerd = self._spawn(
            "containerd",
            [str(self.bins.runtime / "containerd"), "--config", str(config)],
            env={"PATH": f"{self.bins.runtime}:{os.environ['PATH']}"},
        )

        def serving() -> bool:
            containerd.check_alive()
            return self.ctr("version", check=False).returncode == 0

        wait_for(serving, 60, message="containerd to serve its socket")

    def ctr(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return _run(
            str(self.bins.runtime / "ctr"),
            "-a",
            str(self.containerd_socket),
            "-n",
            "k8s.io",
            *args,
            check=check,
            timeout=timeout,
        )

    def import_image(self, archive: Path) -> None:
        """Import an OCI or docker archive into the namespace the kubelet's pods use."""
        self.ctr("images", "import", str(archive))

    def _import_pause_image(self) -> None:
        archive = self.workdir / "pause.tar"
        build_pause_archive(self.bins.tools / "pause", archive)
        self.import_image(archive)
        self.ctr("images", "label", PAUSE_IMAGE, "io.cri-containerd.pinned=pinned")

    # ---- kubelet and kube-proxy

    def _start_kubelet(self) -> None:
        self.kubelet_dir.mkdir(parents=True, exist_ok=True)
        forget_device_allocations()
        config = self.workdir / "kubelet-config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
                    # This machine kind is a cgroup v1 host; v1.36 refuses v1 unless told.
                    "failCgroupV1": False,
                    "cgroupDriver": "cgroupfs",
                    "failSwapOn": False,
                    # The API server's calls (logs, exec) authenticate with nothing here.
                    "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
                    "authorization": {"mode": "AlwaysAllow"},
                    "address": GATEWAY,
                    "healthzBindAddress": "127.0.0.1",
                    "readOnlyPort": 0,
                    # ConfigMap/Secret volume updates reach pods within syncFrequency (+ jitter);
                    # the default is 1m, shortened so the reload cases run in seconds.
                    "syncFrequency": "10s",
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
                    "resolvConf": "",
                    "serializeImagePulls": False,
                }
            )
        )
        self._spawn(
            "kubelet",
            [
                str(self.bins.k8s / "kubelet"),
                "--config",
                str(config),
                "--kubeconfig",
                str(self.plane.kubeconfig),
                "--root-dir",
                str(self.kubelet_dir),
                "--cert-dir",
                str(self.workdir / "kubelet-pki"),
                "--hostname-override",
                self.node_name,
                "--node-ip",
                GATEWAY,
                "--node-labels",
                ",".join(f"{k}={v}" for k, v in self.labels.items()),
                *(["--register-with-taints", ",".join(self.taints)] if self.taints else []),
                "--v",
                "1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        config = self.workdir / "kube-proxy-config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(self.plane.kubeconfig)},
                    "mode": "iptables",
                    "clusterCIDR": POD_CIDR,
                    "hostnameOverride": self.node_name,
                    "bindAddress": GATEWAY,
                    "healthzBindAddress": "127.0.0.1:10256",
                    "metricsBindAddress": "127.0.0.1:10249",
                    # Leave the (host-wide) conntrack table size alone.
                    "conntrack": {"maxPerCore": 0, "min": 0},
                }
            )
        )
        self._spawn("kube-proxy", [str(self.bins.k8s / "kube-proxy"), "--config", str(config)])

    def wait_ready(self, timeout: float = 180) -> None:
        def ready() -> bool:
            self.check_alive()
            node = self.plane.get_json("node", self.node_name)
            conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
            taints = {t["key"] for t in node["spec"].get("taints") or []}
            return conditions.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints

        wait_for(ready, timeout, interval=1, message=f"node {self.node_name} Ready")
        # kube-proxy has written the kubernetes Service's rules once it reports healthy.
        wait_for(
            lambda: _run("iptables", "-t", "nat", "-S", "KUBE-SERVICES", check=False).stdout.count("-A") > 0,
            60,
            message="kube-proxy's KUBE-SERVICES chain",
        )

    # ---- the fake NVIDIA device plugin

    def advertise(self, resources: Mapping[str, int], timeout: float = 60) -> None:
        """(Re)start the fake device plugin with this layout and wait until the node's
        allocatable shows it (resources no longer listed drop to 0)."""
        if self.device_plugin is not None:
            stop_all([self.device_plugin])
        argv = [
            str(self.bins.tools / "fake-nvidia-device-plugin"),
            "--socket-dir",
            str(DEVICE_PLUGIN_DIR),
            "--node-name",
            self.node_name,
        ]
        for name, count in resources.items():
            argv += ["--resource", f"{name}={count}"]
        log = self.logs / f"device-plugin-{int(time.time() * 1000)}.log"
        self.device_plugin = ManagedProcess.start("fake-nvidia-device-plugin", argv, log)

        def shown() -> bool:
            self.device_plugin.check_alive()
            allocatable = self.plane.get_json("node", self.node_name)["status"].get("allocatable", {})
            return all(allocatable.get(name, "0") == str(count) for name, count in resources.items())

        wait_for(shown, timeout, interval=0.5, message=f"node allocatable to show {dict(resources)}")

    # ---- the fake NVIDIA DRA kubelet plugin

    def start_dra_plugin(self, migs: Sequence[str], timeout: float = 60) -> dict:
        """Start the fake DRA kubelet plugin (driver gpu.nvidia.com) with these MIG devices
        ("1g.10gb@0": profile and placement start on the node's one H100) and wait for its
        ResourceSlice; returns it. The kubelet registers the plugin through
        <kubelet dir>/plugins_registry and calls it to prepare claims."""
        self.stop_dra_plugin()
        self.cdi_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.bins.tools / "fake-nvidia-dra-plugin"),
            "--kubeconfig",
            str(self.plane.kubeconfig),
            "--node-name",
            self.node_name,
            "--kubelet-dir",
            str(self.kubelet_dir),
            "--cdi-dir",
            str(self.cdi_dir),
            "--v",
            "2",
        ]
        for mig in migs:
            argv += ["--mig", mig]
        log = self.logs / f"dra-plugin-{int(time.time() * 1000)}.log"
        self.dra_plugin = ManagedProcess.start("fake-nvidia-dra-plugin", argv, log)

        def published() -> dict | None:
            self.dra_plugin.check_alive()
            slices = self.plane.get_json("resourceslices")["items"]
            mine = [
                s
                for s in slices
                if s["spec"].get("driver") == "gpu.nvidia.com" and s["spec"].get("nodeName") == self.node_name
            ]
            return mine[0] if len(mine) == 1 and len(mine[0]["spec"].get("devices") or []) == len(migs) else None

        return wait_for(published, timeout, interval=0.5, message="the DRA plugin's ResourceSlice")

    def stop_dra_plugin(self) -> None:
        if self.dra_plugin is not None:
            stop_all([self.dra_plugin])
            self.dra_plugin = None

    def allocated_device_ids(self) -> list[str]:
        """Device IDs the fake plugin handed out (its 'allocate [...]' log lines)."""
        ids: list[str] = []
        if self.device_plugin is None:
            return ids
        for line in self.device_plugin.log.read_text().splitlines():
            if ": allocate [" in line:
                ids += line.split(": allocate [", 1)[1].rstrip("]").split()
        return ids


def build_pause_archive(binary: Path, archive: Path) -> None:
    """An OCI archive of an image holding only `binary` as /pause, named PAUSE_IMAGE."""
    container = _run("buildah", "from", "scratch").stdout.strip()
    try:
        _run("buildah", "copy", container, str(binary), "/pause")
        _run("buildah", "config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container)
        image = _run("buildah", "commit", "--quiet", container, "gpurs-pause-build").stdout.strip()
    finally:
        _run("buildah", "rm", container, check=False)
    archive.unlink(missing_ok=True)
    _run("buildah", "push", "--quiet", image, f"oci-archive:{archive}:{PAUSE_IMAGE}")
    _run("buildah", "rmi", image, check=False)
