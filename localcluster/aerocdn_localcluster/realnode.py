"""Real nodes of the local cluster: the I/O (namespaces, cgroups, files, processes) that
`nodeplan.py` describes. `LocalCluster` calls these; `cleanup()` and `leftovers()` also work
from nothing but a `NodeNetwork` and a node count, so `down` can clean up a detached cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from aerocdn_localcluster import nodeplan
from aerocdn_localcluster.errors import ClusterError

CGROUP_ROOT = Path("/sys/fs/cgroup")
_REQUIRED_COMMANDS = ("ip", "nsenter", "unshare", "containerd", "ctr", "runc", "iptables",
                      "conntrack")


def check_host() -> None:
    """Fail with what is missing: root, the Debian packages, the CNI plugins."""
    import shutil

    if os.geteuid() != 0:
        raise ClusterError("real nodes need root (network namespaces, mounts, cgroups)")
    missing = [c for c in _REQUIRED_COMMANDS if shutil.which(c) is None]
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        if not (Path(nodeplan.CNI_BIN_DIR) / plugin).is_file():
            missing.append(f"{nodeplan.CNI_BIN_DIR}/{plugin}")
    if missing:
        raise ClusterError(
            f"real nodes need {', '.join(missing)}: run scripts/bootstrap.sh (Debian packages "
            "containerd, runc, containernetworking-plugins, iproute2, iptables, conntrack)"
        )


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise ClusterError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result


def host_addresses() -> list[str]:
    out = _run(["ip", "-j", "-4", "addr", "show"]).stdout
    return [a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])]


# An abstract Unix socket as the lock: held while bound, released when the process ends,
# and nothing is left on disk (a lock file under /run would outlive the run).
_NET_LOCK = "\0aerocdn-localcluster-net"
_NET_LOCK_WAIT = 300.0


@contextlib.contextmanager
def net_lock() -> Iterator[None]:
    """Two runs starting at once must not pick the same 10.201.S.0/24."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + _NET_LOCK_WAIT
    try:
        while True:
            try:
                sock.bind(_NET_LOCK)
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"another local cluster held the network lock for {_NET_LOCK_WAIT:.0f}"
                        " s") from exc
                time.sleep(0.1)
        yield
    finally:
        sock.close()


def setup_network(run_id: str, count: int) -> nodeplan.NodeNetwork:
    """Create the hub, the uplink and the node namespaces; undo everything on failure."""
    with net_lock():
        net = nodeplan.NodeNetwork(run_id=run_id,
                                   subnet=nodeplan.choose_subnet(host_addresses()))
        try:
            for argv in nodeplan.network_setup(net, count):
                _run(argv)
        except BaseException:
            teardown_network(net, count)
            raise
    return net


def teardown_network(net: nodeplan.NodeNetwork, count: int) -> None:
    for argv in nodeplan.network_teardown(net, count):
        _run(argv, check=False)


# -- cgroups (v1: one hierarchy per controller, and name=systemd) -----------------------------


def cgroup_mounts() -> list[Path]:
    """Every cgroup hierarchy: the v1 controllers, name=systemd, and the hybrid v2 `unified`
    (runc places containers there too)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ")[0] in ("cgroup", "cgroup2"):
            found.append(Path(left.split(" ")[4]))
    return sorted(found)


def create_cgroup(name: str) -> None:
    """`<name>` and `<name>/system` (the node's daemons) in every hierarchy."""
    for mount in cgroup_mounts():
        for path in (mount / name, mount / name / "system"):
            path.mkdir(exist_ok=True)
            if (path.parent / "cpuset.cpus").exists():
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if not (path / f).read_text().strip():
                        (path / f).write_text((path.parent / f).read_text())


def join_cgroup(name: str) -> None:  # pragma: no cover - runs in the child before exec
    pid = str(os.getpid())
    for mount in cgroup_mounts():
        with contextlib.suppress(OSError):
            (mount / name / "system" / "cgroup.procs").write_text(pid)


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for mount in cgroup_mounts():
        top = mount / name
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top):
            with contextlib.suppress(OSError):
                text = (Path(dirpath) / "cgroup.procs").read_text()
                pids |= {int(p) for p in text.split()}
    return pids


def remove_cgroup(name: str, timeout: float = 20.0) -> None:
    """SIGKILL everything in the node's cgroups (daemons, shims, containers), then rmdir them."""
    deadline = time.monotonic() + timeout
    while (pids := cgroup_pids(name)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    for mount in cgroup_mounts():
        top = mount / name
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            for _ in range(50):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def cleanup(net: nodeplan.NodeNetwork, count: int) -> None:
    """Everything a run's real nodes leave outside their workdir, removed."""
    for i in range(count):
        remove_cgroup(net.cgroup(i))
    teardown_network(net, count)


def leftovers(net: nodeplan.NodeNetwork, workdir: Path) -> list[str]:
    """What of this run is still on the machine: processes, namespaces, links, cgroups, mounts."""
    found: list[str] = []
    netns_dir = Path("/run/netns")
    if netns_dir.is_dir():
        found += [f"netns {p.name}" for p in netns_dir.iterdir()
                  if p.name.startswith(net.prefix)]
    links = _run(["ip", "-o", "link", "show"], check=False).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines()
              if net.host_link in line]
    for mount in cgroup_mounts():
        found += [f"cgroup {p}" for p in mount.glob(f"{net.prefix}*")]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if str(workdir) in line or net.prefix in line:
            found.append(f"mount {line.split(' ')[4]}")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if str(workdir) in cmd or net.prefix in cmd:
                    found.append(f"process {entry.name}: {cmd[:120]}")
    return found


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in nodeplan.WATCHED_SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = (Path("/proc/sys") / name).read_text().strip()
    return values


# -- one node's files and processes ----------------------------------------------------------


def write_node_files(paths: nodeplan.NodePaths, net: nodeplan.NodeNetwork, index: int,
                     node: nodeplan.RealNodeSpec, ca: Path) -> dict[str, str]:
    """Write configs; return the /proc/sys covers the mount namespace script binds."""
    for d in (paths.root, paths.containerd_root, paths.cni_conf_dir, paths.cni_ipam_dir,
              paths.var_lib, paths.var_log / "pods", paths.var_log / "containers",
              paths.kubelet_dir, paths.sysctl_dir):
        d.mkdir(parents=True, exist_ok=True)
    paths.containerd_config.write_text(nodeplan.containerd_config(paths))
    (paths.cni_conf_dir / "10-aerocdn.conflist").write_text(
        json.dumps(nodeplan.cni_conflist(paths, index), indent=2))
    paths.kubelet_config.write_text(
        yaml.safe_dump(nodeplan.kubelet_config(paths, net, index, ca), sort_keys=False))
    paths.kube_proxy_config.write_text(
        yaml.safe_dump(nodeplan.kube_proxy_config(paths, net, index, node), sort_keys=False))
    paths.resolv_conf.write_text(f"nameserver {nodeplan.DNS_SERVICE_IP}\n")
    covers = nodeplan.sysctl_covers(read_sysctls())
    for name, value in covers.items():
        (paths.sysctl_dir / name.replace("/", ".")).write_text(value + "\n")
    return covers


def containerd_argv(paths: nodeplan.NodePaths, net: nodeplan.NodeNetwork, index: int,
                    covers: dict[str, str]) -> list[str]:
    script = paths.root / "mountns.sh"
    script.write_text(nodeplan.mount_namespace_script(paths, covers))
    return ["nsenter", f"--net=/run/netns/{net.node_netns(index)}", "--",
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", str(script), "containerd", "--config", str(paths.containerd_config)]


def in_node(pid: int, argv: list[str]) -> list[str]:
    """Run argv in the network and mount namespaces of the node whose containerd is `pid`."""
    return ["nsenter", "-t", str(pid), "--net", "--mount", "--", *argv]


def import_image(paths: nodeplan.NodePaths, archive: Path) -> None:
    _run(["ctr", "--address", str(paths.containerd_socket), "-n", "k8s.io", "images", "import",
          str(archive)])


def wait(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
