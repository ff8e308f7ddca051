"""Run a real Kubernetes control plane as plain processes on 127.0.0.1.

etcd, kube-apiserver (RBAC on, a real cluster's admission plugins), kube-controller-manager,
kube-scheduler and kwok (simulating the nodes this harness registers, so pods become Running
and Ready). Optionally real nodes beside them (`real_nodes=N`): kubelet + containerd +
kube-proxy in a network namespace each, and CoreDNS (see nodeplan.py); the API server then
listens on the host end of the nodes' uplink instead of loopback.

Every process runs in its own process group and is stopped with SIGTERM, then
SIGKILL, by `LocalCluster.stop()`, on leaving the `with` block, at interpreter exit and on
SIGTERM/SIGHUP.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from aerocdn_localcluster import nodeplan, plan, realnode
from aerocdn_localcluster.errors import ClusterError
from aerocdn_localcluster.pki import make_pki

STOP_GRACE_SECONDS = 10.0
_POLL_SECONDS = 0.1
# Variables that would point a child process at some other cluster or reconfigure etcd.
_SCRUBBED_ENV_PREFIXES = ("ETCD_", "KUBECONFIG", "KWOK_")


def find_repo() -> Path:
    """The aerocdn checkout: $AEROCDN_REPO, or the one this package is installed from."""
    env = os.environ.get("AEROCDN_REPO")
    candidates = [Path(env)] if env else list(Path(__file__).resolve().parents)
    for candidate in candidates:
        if (candidate / "tests" / "cluster" / "build.sh").is_file():
            return candidate
    where = f"AEROCDN_REPO={env}" if env else f"any parent of {Path(__file__).resolve()}"
    raise ClusterError(
        f"tests/cluster/build.sh not found in {where}; set AEROCDN_REPO to the aerocdn checkout"
    )


def build_binaries(repo: Path | None = None) -> Path:
    """Build (or reuse) the pinned control plane binaries; return their directory."""
    script = (repo or find_repo()) / "tests" / "cluster" / "build.sh"
    # The build's progress goes to our stderr; its last stdout line is the bin directory.
    result = subprocess.run(
        ["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise ClusterError(
            f"{script} failed with exit code {result.returncode}: the local control plane "
            "cannot be built (see the messages above)"
        )
    return Path(lines[-1])


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held together while choosing, then released)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((plan.LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_ENV_PREFIXES)}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM the child if the process that started it dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def group_alive(pgid: int) -> bool:
    """Whether any process is left in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and int(entry.name) != os.getpid()
            and text in _read_cmdline(int(entry.name))
        ):
            found.append(int(entry.name))
    return found


def stop_groups(pgids: list[int], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM each process group, wait up to `grace` seconds, then SIGKILL what is left."""
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(group_alive(g) for g in pgids):
        time.sleep(_POLL_SECONDS)
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(group_alive(g) for g in pgids):
        time.sleep(_POLL_SECONDS)


@dataclass
class _Process:
    spec: plan.ProcessSpec
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> int | None:
        return self.popen.poll()

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-lines:])


class _Api:
    """A minimal JSON client for the apiserver, authenticated with the admin certificate."""

    def __init__(self, port: int, pki: Path, host: str = plan.LOOPBACK) -> None:
        self._port = port
        self._host = host
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._ctx = ctx

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection(self._host, self._port, context=self._ctx, timeout=10)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode(errors="replace")
        return resp.status, data


# Started, not yet stopped clusters (strong references: an unreferenced cluster still runs).
_live: set[LocalCluster] = set()
_net_lock = threading.Lock()
_net_installed = False


def _stop_all() -> None:
    for cluster in list(_live):
        cluster.stop()


def _install_safety_net() -> None:
    """Stop every live cluster at interpreter exit and on SIGTERM/SIGHUP (main thread only)."""
    global _net_installed
    with _net_lock:
        if _net_installed:
            return
        _net_installed = True
    atexit.register(_stop_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _on_signal)


def _on_signal(signum: int, frame: types.FrameType | None) -> None:
    _stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


class LocalCluster:
    """A local control plane; use as a context manager or call `start()` and `stop()`.

    `workdir`: where certificates, etcd data, kubeconfigs and logs go (default: a new temporary
    directory, removed on stop). `real_nodes`: how many real nodes (or their specs) to run
    beside the kwok ones; `images`: docker-archives imported into each real node's containerd.
    `detach`: leave the processes running when this Python process
    exits (for `python -m aerocdn_localcluster up`); `stop()` still stops them.
    """

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        bin_dir: Path | None = None,
        nodes: tuple[plan.NodeSpec, ...] | None = None,
        taint_nodes: bool = False,
        real_nodes: int | tuple[nodeplan.RealNodeSpec, ...] = 0,
        images: tuple[Path, ...] = (),
        timeout: float = 180.0,
        detach: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = (
            Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="aerocdn-cluster-"))
        )
        self._bin_dir = bin_dir
        self.nodes = nodes if nodes is not None else plan.default_nodes()
        self._taint_nodes = taint_nodes
        self.real_nodes = (
            nodeplan.default_real_nodes(real_nodes) if isinstance(real_nodes, int) else real_nodes
        )
        self._images = tuple(images)
        # Set once the real nodes' network exists (and cleaned up by stop()).
        self.node_network: nodeplan.NodeNetwork | None = None
        self._address = plan.LOOPBACK
        self._containerd_pids: dict[str, int] = {}
        self._timeout = timeout
        self._detach = detach
        self._log = log or (lambda msg: print(f"localcluster: {msg}", file=sys.stderr))
        self._procs: list[_Process] = []
        self._stopped = False
        self.ports: plan.Ports | None = None
        self.layout: plan.Layout | None = None
        self.started_seconds: float | None = None
        # Seconds from start() to each milestone, for benchmarks.
        self.milestones: dict[str, float] = {}
        self._begun = 0.0

    # -- public ---------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        if self.ports is None:
            raise ClusterError("the local cluster is not started")
        return f"https://{self._address}:{self.ports.apiserver}"

    @property
    def pids(self) -> list[int]:
        """Process ids (each also its process group id) of the control plane processes."""
        return [p.pid for p in self._procs]

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalCluster:
        """Start everything and return once the API is ready and every node is Ready."""
        self._begun = time.monotonic()
        if not self._detach:
            _install_safety_net()
            _live.add(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - self._begun
        return self

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL) and remove a temporary workdir."""
        if self._stopped:
            return
        self._stopped = True
        _live.discard(self)
        stop_groups([p.pid for p in reversed(self._procs)])
        for p in self._procs:
            with contextlib.suppress(Exception):
                p.popen.wait(timeout=1)
            p.log.close()
        if self.node_network is not None:
            realnode.cleanup(self.node_network, len(self.real_nodes))
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def state(self) -> dict[str, Any]:
        """What `down` needs to stop a detached cluster."""
        return {
            "workdir": str(self.workdir),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "processes": [{"name": p.spec.name, "pid": p.pid} for p in self._procs],
            "node_network": None if self.node_network is None else {
                "run_id": self.node_network.run_id, "subnet": self.node_network.subnet,
                "nodes": len(self.real_nodes)},
        }

    def node_exec(self, node: str, argv: list[str]) -> list[str]:
        """argv run inside real node `node`'s network and mount namespaces."""
        return realnode.in_node(self._containerd_pids[node], argv)

    def netns(self, node: str) -> str:
        """The network namespace of real node `node` (`ip netns exec <it> ...`)."""
        assert self.node_network is not None
        index = [n.name for n in self.real_nodes].index(node)
        return self.node_network.node_netns(index)

    # -- steps ----------------------------------------------------------------------------

    def _start(self) -> None:
        bin_dir = self._bin_dir or build_binaries()
        layout = plan.Layout(workdir=self.workdir, bin_dir=bin_dir)
        self.layout = layout
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
            if not os.access(layout.binary(name), os.X_OK):
                raise ClusterError(f"{layout.binary(name)} is missing: run tests/cluster/build.sh")
        if not layout.kwok_stages.is_file():
            raise ClusterError(f"{layout.kwok_stages} is missing: run tests/cluster/build.sh")
        self._milestone("binaries")
        self._clean_workdir(layout)
        if self.real_nodes:
            realnode.check_host()
            self.node_network = realnode.setup_network(secrets.token_hex(3), len(self.real_nodes))
            self._address = self.node_network.host_ip
            self._milestone("node-network")
        ports = plan.Ports(*free_ports(5))
        self.ports = ports
        make_pki(layout.pki, plan.certificates(
            address=self._address, real_nodes=tuple(n.name for n in self.real_nodes)))
        self._write_kubeconfigs(layout, ports)
        self._milestone("certificates")

        specs = {s.name: s for s in plan.processes(
            layout, ports, address=self._address, real_nodes=bool(self.real_nodes))}
        self._spawn(specs["etcd"])
        # Starting the API server only once etcd answers spares it gRPC reconnect backoff.
        self._wait("etcd to be healthy", lambda: _etcd_healthy(ports.etcd_client))
        self._milestone("etcd")
        self._spawn(specs["kube-apiserver"])
        api = _Api(ports.apiserver, layout.pki, self._address)
        self._wait("the API server to be ready (/readyz)", lambda: _ok(api, "/readyz"))
        self._milestone("apiserver")
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            self._spawn(specs[name])
        for node in self.nodes:
            status, body = api.request("POST", "/api/v1/nodes", plan.node_object(
                node, taint=self._taint_nodes))  # fmt: skip
            if status not in (200, 201):
                raise ClusterError(f"registering node {node.name} failed ({status}): {body}")
        names = {n.name for n in self.nodes}
        self._wait(f"{len(names)} simulated nodes to be Ready", lambda: _nodes_ready(api, names))
        self._milestone("nodes")
        # Pods need their namespace's default ServiceAccount (made by the controller manager).
        self._wait(
            "the default ServiceAccount",
            lambda: _ok(api, "/api/v1/namespaces/default/serviceaccounts/default"),
        )
        self._milestone("serviceaccount")
        if self.real_nodes:
            self._start_real_nodes(api, layout)
        self._log(f"ready: {len(names)} simulated and {len(self.real_nodes)} real nodes, "
                  f"API at {self.server}, kubeconfig {self.kubeconfig}")

    def _start_real_nodes(self, api: _Api, layout: plan.Layout) -> None:
        """CoreDNS in the hub, then per node containerd, the images, kubelet and kube-proxy."""
        net = self.node_network
        assert net is not None
        for obj in nodeplan.dns_objects(net):
            path = nodeplan.api_path(obj)
            status, body = api.request("POST", path, obj)
            if status not in (200, 201):
                raise ClusterError(f"creating {obj['kind']} {obj['metadata']['name']} failed "
                                   f"({status}): {body}")
        corefile = self.workdir / "Corefile"
        corefile.write_text(nodeplan.corefile(net, layout.component_kubeconfig("coredns")))
        self._spawn(plan.ProcessSpec(name="coredns", argv=(
            "nsenter", f"--net=/run/netns/{net.hub_netns}", "--",
            str(layout.binary("coredns")), "-conf", str(corefile))))
        pause = self.workdir / "images" / "pause.tar"
        pause.parent.mkdir(exist_ok=True)
        pause.write_bytes(nodeplan.pause_image_archive(layout.binary("pause").read_bytes()))
        for index, node in enumerate(self.real_nodes):
            paths = nodeplan.NodePaths(self.workdir / "nodes" / node.name)
            covers = realnode.write_node_files(paths, net, index, node, layout.pki / "ca.crt")
            shutil.copy(layout.component_kubeconfig(f"kubelet-{node.name}"),
                        paths.kubelet_kubeconfig)
            shutil.copy(layout.component_kubeconfig("kube-proxy"), paths.kube_proxy_kubeconfig)
            realnode.create_cgroup(net.cgroup(index))
            containerd = self._spawn(plan.ProcessSpec(
                name=f"containerd-{node.name}",
                argv=tuple(realnode.containerd_argv(paths, net, index, covers))),
                cgroup=net.cgroup(index))
            self._containerd_pids[node.name] = containerd.pid
            self._wait(f"containerd of {node.name}", functools.partial(_ctr_ready, paths))
            for archive in (pause, *self._images):
                realnode.import_image(paths, archive)
            self._milestone(f"{node.name}-images")
            for name, argv in (
                ("kubelet", nodeplan.kubelet_argv(layout.bin_dir, paths, net, index, node)),
                ("kube-proxy", [str(layout.binary("kube-proxy")),
                                f"--config={paths.kube_proxy_config}", "--v=1"]),
            ):
                self._spawn(plan.ProcessSpec(
                    name=f"{name}-{node.name}",
                    argv=tuple(realnode.in_node(containerd.pid, argv))),
                    cgroup=net.cgroup(index))
        names = {n.name for n in self.real_nodes}
        self._wait(f"{len(names)} real nodes to be Ready", lambda: _nodes_ready(api, names))
        self._milestone("real-nodes")
        self._wait("CoreDNS to be ready", lambda: _http_ok(net.dns_ip, 8181, "/ready"))
        self._milestone("dns")

    def _milestone(self, name: str) -> None:
        self.milestones[name] = time.monotonic() - self._begun

    def _clean_workdir(self, layout: plan.Layout) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in (layout.pki, layout.etcd_data, layout.logs):
            shutil.rmtree(sub, ignore_errors=True)
        layout.logs.mkdir()

    def _write_kubeconfigs(self, layout: plan.Layout, ports: plan.Ports) -> None:
        server = f"https://{self._address}:{ports.apiserver}"
        ca = (layout.pki / "ca.crt").read_bytes()
        users = {
            layout.admin_kubeconfig: "admin",
            layout.component_kubeconfig("kube-controller-manager"): "kube-controller-manager",
            layout.component_kubeconfig("kube-scheduler"): "kube-scheduler",
            layout.component_kubeconfig("kwok"): "kwok",
        }
        if self.real_nodes:
            users[layout.component_kubeconfig("kube-proxy")] = "kube-proxy"
            users[layout.component_kubeconfig("coredns")] = "coredns"
            for n in self.real_nodes:
                users[layout.component_kubeconfig(f"kubelet-{n.name}")] = f"node-{n.name}"
        for path, cert in users.items():
            config = plan.kubeconfig(
                server=server,
                ca_pem=ca,
                cert_pem=(layout.pki / f"{cert}.crt").read_bytes(),
                key_pem=(layout.pki / f"{cert}.key").read_bytes(),
                user=cert,
            )
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            path.chmod(0o600)

    def _spawn(self, spec: plan.ProcessSpec, cgroup: str | None = None) -> _Process:
        assert self.layout is not None
        log_path = self.layout.logs / f"{spec.name}.log"
        log = log_path.open("wb")
        in_main = threading.current_thread() is threading.main_thread()
        die = not (self._detach or not in_main)

        def preexec() -> None:  # pragma: no cover - runs in the child before exec
            if cgroup is not None:
                realnode.join_cgroup(cgroup)
            if die:
                _die_with_parent()

        try:
            popen = subprocess.Popen(
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=_child_env(),
                start_new_session=True,  # own session and process group: pgid == pid
                preexec_fn=preexec if (die or cgroup) else None,
            )
        except OSError as e:
            log.close()
            raise ClusterError(f"cannot start {spec.name}: {e}") from e
        proc = _Process(spec=spec, popen=popen, log_path=log_path, log=log)
        self._procs.append(proc)
        return proc

    def _wait(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self._timeout
        last_error: Exception | None = None
        while True:
            for p in self._procs:
                code = p.exited()
                if code is not None:
                    raise ClusterError(
                        f"{p.spec.name} exited with code {code} while waiting for {what}; "
                        f"the end of {p.log_path}:\n{p.log_tail()}"
                    )
            try:
                if done():
                    return
                last_error = None
            except (OSError, http.client.HTTPException) as e:
                last_error = e
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.log_path}:\n{p.log_tail(10)}" for p in self._procs)
                raise ClusterError(
                    f"timed out after {self._timeout:.0f} s waiting for {what}"
                    + (f" (last error: {last_error})" if last_error else "")
                    + f"\n{tails}"
                )
            time.sleep(_POLL_SECONDS)


def _etcd_healthy(port: int) -> bool:
    conn = http.client.HTTPConnection(plan.LOOPBACK, port, timeout=5)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        return resp.status == 200 and b'"true"' in resp.read()
    finally:
        conn.close()


def _ctr_ready(paths: nodeplan.NodePaths) -> bool:
    if not paths.containerd_socket.exists():
        return False
    result = subprocess.run(
        ["ctr", "--address", str(paths.containerd_socket), "version"],
        capture_output=True, check=False, stdin=subprocess.DEVNULL, timeout=10,
    )
    return result.returncode == 0


def _http_ok(host: str, port: int, path: str) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    finally:
        conn.close()


def _ok(api: _Api, path: str) -> bool:
    status, _ = api.request("GET", path)
    return status == 200


def _nodes_ready(api: _Api, names: set[str]) -> bool:
    status, body = api.request("GET", f"/api/v1/nodes?labelSelector={plan.MANAGED_LABEL}%3Dtrue")
    if status != 200 or not isinstance(body, dict):
        return False
    ready = {n["metadata"]["name"] for n in body.get("items", []) if plan.node_is_ready(n)}
    return names <= ready


@contextlib.contextmanager
def local_cluster(**kwargs: Any) -> Iterator[LocalCluster]:
    """`with local_cluster() as c:` — the same as `with LocalCluster(...) as c:`."""
    with LocalCluster(**kwargs) as cluster:
        yield cluster
