"""Starts and stops the single-node cluster: ``python -m deploy.cluster up|down|status``.

``up`` creates the network namespace, certificates and configs, starts each daemon in order
inside the namespace and waits for it, then runs CoreDNS and returns once the node is Ready and
a DNS query for the API server's Service answers. ``down`` stops every process by the PID it
recorded (and the pods' processes through containerd), unmounts and removes whatever ``up``
created, puts back the kernel settings the kubelet changed and deletes the namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.cluster import configs, dns, images, layout, netns, pki
from stack.supervisor import say

STOP_GRACE_S = 10.0
# Paths outside STATE_DIR that the kubelet, containerd or the CNI plugins create when missing;
# k8s-up records which were absent and k8s-down removes exactly those.
HOST_PATHS = (
    Path("/var/lib/cni"),
    Path("/var/log/containers"),
    Path("/var/log/pods"),
    Path("/run/containerd"),
    Path("/var/lib/kubelet"),
    Path("/var/lib/containerd"),
    Path("/etc/cni"),
    Path("/opt/cni"),
)
CREATED = layout.STATE_DIR / "created.json"
SYSCTLS = layout.STATE_DIR / "sysctls.json"


class ClusterError(RuntimeError):
    """The cluster could not start; the message says which part and where its log is."""


@dataclass
class Daemon:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    timeout_s: float = 90.0

    @property
    def pid_file(self) -> Path:
        return layout.PIDS / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return layout.LOGS / f"{self.name}.log"


# -- probes (run inside the namespace) -----------------------------------------------------------


def _tls_context(verify: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(layout.PKI / "ca.crt"))
    context.load_cert_chain(str(layout.PKI / "admin.crt"), str(layout.PKI / "admin.key"))
    if not verify:  # the components' own self-signed serving certificates
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _http_ok(url: str, *, verify: bool = True) -> bool:
    def fetch() -> bool:
        context = _tls_context(verify) if url.startswith("https") else None
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return response.status == 200
        except OSError:
            return False

    return netns.call_inside(fetch)


def kubectl_argv() -> list[str]:
    """kubectl against the cluster, run inside its namespace."""
    kubectl = layout.binary("kubectl")
    return [*netns.enter_argv(), kubectl, "--kubeconfig", str(layout.KUBECONFIG)]


def kubectl(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*kubectl_argv(), *args], check=check, capture_output=True, text=True, timeout=timeout
    )


def node_ready() -> bool:
    result = kubectl("get", "node", layout.NODE_NAME, "-o", "json", check=False)
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# -- daemons ---------------------------------------------------------------------------------------


def _argv(binary: str, flags: dict[str, object]) -> list[str]:
    return [layout.binary(binary), *(f"--{name}={value}" for name, value in flags.items())]


def _containerd_ready() -> bool:
    if not layout.CONTAINERD_SOCKET.exists():
        return False
    address = str(layout.CONTAINERD_SOCKET)
    version = [layout.binary("ctr"), "--address", address, "version"]
    return subprocess.run(version, capture_output=True).returncode == 0


def daemons() -> list[Daemon]:
    pki_dir, kubeconfig, state = layout.PKI, str(layout.KUBECONFIG), layout.STATE_DIR
    api = f"https://{layout.NODE_IP}:{layout.API_PORT}"
    # Every component reads the one admin kubeconfig (see pki.py).
    client = {
        "kubeconfig": kubeconfig,
        "authentication-kubeconfig": kubeconfig,
        "authorization-kubeconfig": kubeconfig,
        "bind-address": "127.0.0.1",
        "leader-elect": "false",
    }
    return [
        Daemon(
            "etcd",
            _argv(
                "etcd",
                {
                    "name": "servoscope",
                    "data-dir": state / "etcd",
                    "listen-client-urls": "http://127.0.0.1:2379",
                    "advertise-client-urls": "http://127.0.0.1:2379",
                    "listen-peer-urls": "http://127.0.0.1:2380",
                    "initial-advertise-peer-urls": "http://127.0.0.1:2380",
                    "initial-cluster": "servoscope=http://127.0.0.1:2380",
                    # A throwaway test cluster: fsync buys nothing and costs seconds on busy disks.
                    "unsafe-no-fsync": "true",
                    "log-level": "warn",
                },
            ),
            lambda: _http_ok("http://127.0.0.1:2379/health"),
        ),
        Daemon(
            "kube-apiserver",
            _argv(
                "kube-apiserver",
                {
                    "etcd-servers": "http://127.0.0.1:2379",
                    "advertise-address": layout.NODE_IP,
                    "secure-port": layout.API_PORT,
                    "service-cluster-ip-range": layout.SERVICE_CIDR,
                    "client-ca-file": pki_dir / "ca.crt",
                    "tls-cert-file": pki_dir / "apiserver.crt",
                    "tls-private-key-file": pki_dir / "apiserver.key",
                    "kubelet-client-certificate": pki_dir / "admin.crt",
                    "kubelet-client-key": pki_dir / "admin.key",
                    # The node's name resolves nowhere (no DNS outside the cluster).
                    "kubelet-preferred-address-types": "InternalIP",
                    "service-account-issuer": f"https://kubernetes.default.svc.{layout.CLUSTER_DOMAIN}",
                    "service-account-key-file": pki_dir / "sa.pub",
                    "service-account-signing-key-file": pki_dir / "sa.key",
                    "authorization-mode": "Node,RBAC",
                    "profiling": "false",
                },
            ),
            lambda: _http_ok(f"{api}/readyz"),
        ),
        Daemon(
            "kube-controller-manager",
            _argv(
                "kube-controller-manager",
                {
                    **client,
                    "root-ca-file": pki_dir / "ca.crt",
                    "service-account-private-key-file": pki_dir / "sa.key",
                    "use-service-account-credentials": "true",
                    "cluster-signing-cert-file": pki_dir / "ca.crt",
                    "cluster-signing-key-file": pki_dir / "ca.key",
                },
            ),
            lambda: _http_ok("https://127.0.0.1:10257/healthz", verify=False),
        ),
        Daemon(
            "kube-scheduler",
            _argv("kube-scheduler", client),
            lambda: _http_ok("https://127.0.0.1:10259/healthz", verify=False),
        ),
        Daemon(
            "containerd",
            _argv("containerd", {"config": state / "containerd" / "config.toml"}),
            _containerd_ready,
        ),
        Daemon(
            "kubelet",
            _argv(
                "kubelet",
                {
                    "config": state / "kubelet.yaml",
                    "kubeconfig": kubeconfig,
                    "node-ip": layout.NODE_IP,
                    "hostname-override": layout.NODE_NAME,
                    "root-dir": layout.KUBELET_DIR,
                    "cert-dir": pki_dir / "kubelet",
                },
            ),
            node_ready,
            timeout_s=120,
        ),
        # Started once the node is Ready: kube-proxy exits when the node's address changes.
        Daemon(
            "kube-proxy",
            _argv("kube-proxy", {"config": state / "kube-proxy.yaml"}),
            lambda: _http_ok(f"http://{layout.NODE_IP}:10256/healthz"),
        ),
    ]


def _pid(daemon: Daemon) -> int | None:
    try:
        pid = int(daemon.pid_file.read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _start(daemon: Daemon) -> None:
    started = time.monotonic()
    env = {**os.environ, "PATH": f"{Path(layout.binary('containerd')).parent}:{os.environ['PATH']}"}
    with open(daemon.log, "ab") as log:
        process = subprocess.Popen(
            [*netns.enter_argv(), *daemon.argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    daemon.pid_file.write_text(str(process.pid))
    deadline = started + daemon.timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterError(f"{daemon.name} exited ({process.returncode}): see {daemon.log}")
        if daemon.ready():
            say(f"{daemon.name} ready ({time.monotonic() - started:.1f}s, pid {process.pid})")
            return
        time.sleep(0.5)
    raise ClusterError(f"{daemon.name} not ready after {daemon.timeout_s:.0f}s: see {daemon.log}")


def _stop(pid: int, name: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        say(f"{name} (pid {pid}) ignored SIGTERM for {STOP_GRACE_S:.0f}s: killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # Reap it when it is our child (k8s-up's own failure path).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# -- host state that up changes and down restores ------------------------------------------------


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _record_host() -> None:
    CREATED.write_text(json.dumps([str(p) for p in HOST_PATHS if not p.exists()]))
    SYSCTLS.write_text(
        json.dumps({n: _sysctl_path(n).read_text().strip() for n in layout.KUBELET_SYSCTLS})
    )


def _restore_host() -> None:
    if SYSCTLS.exists():
        for name, value in json.loads(SYSCTLS.read_text()).items():
            path = _sysctl_path(name)
            if path.read_text().strip() != value:
                path.write_text(value)
    if CREATED.exists():
        for path in map(Path, json.loads(CREATED.read_text())):
            subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _mounts_under(root: Path) -> list[str]:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(root) or point.startswith(f"{root}/"):
            mounts.append(point)
    return sorted(mounts, key=len, reverse=True)


def _unmount_all(root: Path) -> None:
    for _ in range(5):
        mounts = _mounts_under(root)
        if not mounts:
            return
        for point in mounts:
            subprocess.run(["umount", point], capture_output=True)
    for point in _mounts_under(root):
        subprocess.run(["umount", "-l", point], check=True)


def _cgroup_dirs() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    roots = [base / h / layout.CGROUP_ROOT.strip("/") for h in os.listdir(base)]
    roots.append(base / layout.CGROUP_ROOT.strip("/"))
    return [r for r in roots if r.is_dir()]


def _create_cgroups() -> None:
    """The kubelet's cgroup root must exist in every hierarchy before it starts."""
    base = Path("/sys/fs/cgroup")
    for hierarchy in (p for p in base.iterdir() if p.is_dir()):
        root = hierarchy / layout.CGROUP_ROOT.strip("/")
        root.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset starts empty
            if (root / name).exists() and not (root / name).read_text().strip():
                (root / name).write_text((hierarchy / name).read_text())


def _cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for root in _cgroup_dirs():
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def _remove_cgroups() -> None:
    for root in _cgroup_dirs():
        for directory in sorted(
            (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def _shim_pids() -> list[int]:
    """containerd's runc shims that serve this cluster's containerd (matched by its socket)."""
    address = str(layout.CONTAINERD_SOCKET)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in argv:
                    found.append(int(entry.name))
    return found


def _stop_pods() -> None:
    """Kills every container and pod sandbox through containerd, so their shims exit."""
    if not layout.CONTAINERD_SOCKET.exists():
        return
    with contextlib.suppress(subprocess.CalledProcessError):
        tasks = images.ctr("tasks", "list", "--quiet").stdout.split()
        for task in tasks:
            images.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            states = images.ctr("tasks", "list").stdout
            if "RUNNING" not in states:
                break
            time.sleep(0.2)
        for task in tasks:
            images.ctr("tasks", "delete", "--force", task, check=False)
        for container in images.ctr("containers", "list", "--quiet").stdout.split():
            images.ctr("containers", "delete", container, check=False)


# -- up / down / status ---------------------------------------------------------------------------


def running() -> list[str]:
    return [d.name for d in daemons() if _pid(d) is not None]


def up() -> None:
    if os.geteuid() != 0:
        raise ClusterError(
            "make k8s-up needs root: it creates a network namespace, mounts and cgroups "
            "(run it with sudo, or as root in CI)"
        )
    if netns.exists() or layout.STATE_DIR.exists():
        alive = running() if layout.PIDS.exists() else []
        if len(alive) == len(daemons()) and node_ready():
            say(
                f"the cluster is already running (namespace {layout.NETNS}): make k8s-down stops it"
            )
            return
        say("a cluster was left half-started: removing it first")
        down()
    started = time.monotonic()
    for directory in (layout.LOGS, layout.PIDS, layout.STATE_DIR / "containerd"):
        directory.mkdir(parents=True, exist_ok=True)
    _record_host()
    try:
        _bring_up()
    except BaseException:
        say("start-up failed: stopping what was started (logs kept in /tmp)")
        _keep_logs()
        down()
        raise
    elapsed = time.monotonic() - started
    say(f"cluster up in {elapsed:.0f}s: node {layout.NODE_NAME} Ready, DNS answers")
    client = f"{layout.binary('kubectl')} --kubeconfig {layout.KUBECONFIG}"
    say(f"kubectl: ip netns exec {layout.NETNS} {client} get pods -A")


def _keep_logs() -> None:
    if layout.LOGS.exists():
        kept = Path("/tmp") / f"servoscope-k8s-logs-{int(time.time())}"
        subprocess.run(["cp", "-r", str(layout.LOGS), str(kept)], check=False)
        pods = layout.STATE_DIR / "pod-logs"
        if pods.exists():
            subprocess.run(["cp", "-rL", str(pods), str(kept / "pods")], check=False)
        say(f"logs of the failed start: {kept}")


def _bring_up() -> None:
    netns.create()
    pki.create()
    cluster_images = images.cluster_images()
    runc = subprocess.run(["which", "runc"], capture_output=True, text=True, check=True)
    state = layout.STATE_DIR
    configs.write(
        state / "containerd" / "config.toml",
        configs.containerd_config(cluster_images["pause"], runc.stdout.strip()),
    )
    configs.write(configs.CNI_CONF_DIR / "10-servoscope.conflist", configs.cni_conflist())
    configs.write(state / "kubelet.yaml", configs.kubelet_config())
    configs.write(state / "kube-proxy.yaml", configs.kube_proxy_config())
    _create_cgroups()
    for daemon in daemons():
        if daemon.name == "kube-proxy":
            # The sandbox and CoreDNS images, before the first pod needs them.
            images.load(list(cluster_images.values()))
        _start(daemon)
    manifest = configs.write(
        state / "coredns.yaml", configs.coredns_manifest(cluster_images["coredns"])
    )
    kubectl("apply", "-f", str(manifest))
    volumes = configs.write(state / "volumes.yaml", configs.volumes_manifest())
    kubectl("apply", "-f", str(volumes))
    kubectl(
        "-n",
        "kube-system",
        "rollout",
        "status",
        "deployment/coredns",
        "--timeout=120s",
        timeout=130,
    )
    deadline = time.monotonic() + 30
    while not dns.answers(f"kubernetes.default.svc.{layout.CLUSTER_DOMAIN}", layout.API_SERVICE_IP):
        if time.monotonic() > deadline:
            raise ClusterError("CoreDNS runs but kubernetes.default does not resolve")
        time.sleep(0.5)


def down() -> None:
    if os.geteuid() != 0:
        raise ClusterError("make k8s-down needs root, like make k8s-up")
    if not netns.exists() and not layout.STATE_DIR.exists():
        say("no cluster to stop")
        return
    order = daemons()[::-1]
    for daemon in order:
        if daemon.name == "containerd":
            _stop_pods()
            for pid in _shim_pids():
                _stop(pid, "containerd-shim-runc-v2")
        pid = _pid(daemon)
        if pid is not None:
            _stop(pid, daemon.name)
    # Whatever still runs in the pods' cgroups (nothing, once containerd has done its work).
    for pid in _cgroup_pids():
        _stop(pid, f"pod process {pid}")
    _unmount_all(layout.STATE_DIR)
    _remove_cgroups()
    _restore_host()
    netns.delete()
    subprocess.run(["rm", "-rf", "--one-file-system", str(layout.STATE_DIR)], check=True)
    say("cluster stopped; its namespace, mounts, cgroups and files are gone")


def status() -> int:
    alive = running() if layout.PIDS.exists() else []
    for daemon in daemons():
        print(f"{daemon.name:24} {'running' if daemon.name in alive else 'stopped'}")
    return 0 if alive else 3
