"""What a real node of the local cluster is: pure functions from a layout to names, addresses,
configuration files and command lines. `realnode.py` does the I/O with these values.

The network of one run (all of it inside network namespaces the run creates, except one veth
end in the host namespace that the API server listens on):

    host netns                hub netns (aerocdn-<run>-hub)    node netns (aerocdn-<run>-n<i>)
    acdn<run> 10.201.S.1/24 -- uplink ]                         eth0 10.201.S.(10+i)/24
      kube-apiserver :port        br0 ]-- n<i> ---------------  cni0 10.244.(128+i).1/24
                                  br0 10.201.S.2/24: CoreDNS     kubelet, containerd,
                                                                kube-proxy, the pods

Every node, the hub and the host are on one L2 segment (the hub's bridge), so a node reaches
the API server, CoreDNS and the other nodes directly; each node routes the other nodes' pod
ranges to them, and pod-to-pod traffic between nodes keeps its source address (no NAT). The
host namespace has no route to pods: a client of pod IPs runs in a node's namespace. No
forwarding happens in the host namespace and no host sysctl changes.
kwok's pods get 10.244.0.0/17 (data only); real node i gets 10.244.(128+i).0/24.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLUSTER_POD_CIDR = "10.244.0.0/16"
NODE_NET_PREFIX = "10.201"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
CNI_BIN_DIR = "/usr/lib/cni"
# Real nodes carry this label (kwok nodes carry it with the value `kwok`) and this taint: a pod
# lands on a real node only if it asks to (nodeSelector + toleration), never by accident.
NODE_KIND_LABEL = "aerocdn.dev/node"
REAL = "real"
REAL_NODE_TAINT = {"key": "aerocdn.dev/real-node", "value": "true", "effect": "NoSchedule"}
# What the kubelet sets machine-wide (pkg/kubelet/cm/container_manager_linux.go,
# setupKernelTunables): in the node's private mount namespace, files holding these values
# cover /proc/sys entries that differ, so the kubelet finds them as it wants them and writes
# nothing to the shared machine.
KUBELET_KERNEL_TUNABLES = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
# Host settings a run must leave as it found them (checked by the leftovers test).
WATCHED_SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    *KUBELET_KERNEL_TUNABLES,
)


@dataclass(frozen=True)
class RealNodeSpec:
    """One real node: a kubelet + containerd + kube-proxy in a network namespace of its own."""

    name: str
    region: str = "eu-west"
    zone: str = "eu-west-a"


def default_real_nodes(count: int) -> tuple[RealNodeSpec, ...]:
    return tuple(RealNodeSpec(name=f"real-{i}") for i in range(count))


@dataclass(frozen=True)
class NodeNetwork:
    """Names and addresses of one run's node network. `subnet` is S in 10.201.S.0/24."""

    run_id: str
    subnet: int

    def _ip(self, host: int) -> str:
        return f"{NODE_NET_PREFIX}.{self.subnet}.{host}"

    @property
    def host_ip(self) -> str:
        """The host end of the uplink: the API server binds and advertises this address."""
        return self._ip(1)

    @property
    def dns_ip(self) -> str:
        return self._ip(2)

    def node_ip(self, index: int) -> str:
        return self._ip(10 + index)

    @property
    def hub_netns(self) -> str:
        return f"aerocdn-{self.run_id}-hub"

    def node_netns(self, index: int) -> str:
        return f"aerocdn-{self.run_id}-n{index}"

    @property
    def host_link(self) -> str:
        return f"acdn{self.run_id}"

    def cgroup(self, index: int) -> str:
        """The node's cgroup (in every v1 hierarchy): its daemons, shims, pods and containers."""
        return f"aerocdn-{self.run_id}-n{index}"

    @property
    def prefix(self) -> str:
        return f"aerocdn-{self.run_id}-"


def pod_cidr(index: int) -> str:
    return f"10.244.{128 + index}.0/24"


def choose_subnet(used_addresses: Iterable[str]) -> int:
    """The first 10.201.S.0/24 (S in 1..254) holding none of the host's addresses."""
    taken = set()
    for addr in used_addresses:
        parts = addr.split("/")[0].split(".")
        if len(parts) == 4 and ".".join(parts[:2]) == NODE_NET_PREFIX:
            taken.add(int(parts[2]))
    for s in range(1, 255):
        if s not in taken:
            return s
    raise ValueError(f"every {NODE_NET_PREFIX}.S.0/24 is in use on this host")


def network_setup(net: NodeNetwork, count: int,
                  service_cidr: str = "10.96.0.0/16") -> list[list[str]]:
    """`ip` command lines that build the hub, the uplink and `count` node namespaces."""
    hub = net.hub_netns
    cmds = [
        ["ip", "netns", "add", hub],
        ["ip", "-n", hub, "link", "set", "lo", "up"],
        ["ip", "-n", hub, "link", "add", "br0", "type", "bridge"],
        ["ip", "-n", hub, "addr", "add", f"{net.dns_ip}/24", "dev", "br0"],
        ["ip", "-n", hub, "link", "set", "br0", "up"],
        ["ip", "link", "add", net.host_link, "type", "veth", "peer", "name", "uplink",
         "netns", hub],
        ["ip", "addr", "add", f"{net.host_ip}/24", "dev", net.host_link],
        ["ip", "link", "set", net.host_link, "up"],
        ["ip", "-n", hub, "link", "set", "uplink", "master", "br0", "up"],
    ]
    for i in range(count):
        ns = net.node_netns(i)
        cmds += [
            ["ip", "netns", "add", ns],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            ["ip", "-n", hub, "link", "add", f"n{i}", "type", "veth", "peer", "name", "eth0",
             "netns", ns],
            ["ip", "-n", hub, "link", "set", f"n{i}", "master", "br0", "up"],
            ["ip", "-n", ns, "addr", "add", f"{net.node_ip(i)}/24", "dev", "eth0"],
            ["ip", "-n", ns, "link", "set", "eth0", "up"],
            # Per network namespace: forwarding between the pods' bridge and eth0.
            ["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
            # A route for ClusterIPs, so that the node's own processes (not only its pods) get
            # to kube-proxy's DNAT in OUTPUT; an address nothing answers for stays on the link.
            ["ip", "-n", ns, "route", "add", service_cidr, "dev", "eth0"],
            # Pod to pod across nodes keeps the pod's address, as in a cluster network: the
            # CNI bridge masquerades all that leaves the node's pod range (ipMasq), so this
            # rule, first in the node's POSTROUTING, lets other nodes' pods pass unNATed.
            # kube-proxy later puts its own jump (the Service traffic it marks) above it.
            ["ip", "netns", "exec", ns, "iptables", "-t", "nat", "-A", "POSTROUTING",
             "-s", pod_cidr(i), "-d", CLUSTER_POD_CIDR, "-j", "RETURN"],
        ]
        for j in range(count):
            if j != i:
                cmds.append(["ip", "-n", ns, "route", "add", pod_cidr(j), "via", net.node_ip(j)])
    return cmds


def network_teardown(net: NodeNetwork, count: int) -> list[list[str]]:
    """Deleting the namespaces deletes their interfaces, and the host end with its veth peer."""
    return [["ip", "netns", "del", net.node_netns(i)] for i in range(count)] + [
        ["ip", "netns", "del", net.hub_netns],
        ["ip", "link", "del", net.host_link],
    ]


@dataclass(frozen=True)
class NodePaths:
    """Where one real node keeps its state (under the cluster's workdir)."""

    root: Path

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def var_lib(self) -> Path:
        """Bound over /var/lib in the node's mount namespace (CNI's cache, anything else)."""
        return self.root / "var-lib"

    @property
    def var_log(self) -> Path:
        """Bound over /var/log in the node's mount namespace (pod and container logs)."""
        return self.root / "var-log"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def kube_proxy_kubeconfig(self) -> Path:
        return self.root / "kube-proxy.kubeconfig"

    @property
    def resolv_conf(self) -> Path:
        return self.root / "resolv.conf"

    @property
    def sysctl_dir(self) -> Path:
        return self.root / "sysctl"


def containerd_config(paths: NodePaths) -> str:
    """containerd 1.6 (Debian's): CRI with runc and cgroupfs, overlayfs, the CNI bridge.

    `restrict_oom_score_adj`: the sandbox this runs in lacks CAP_SYS_RESOURCE (runc fails to
    lower oom_score_adj otherwise). The state directory is /run/containerd, a tmpfs of the
    node's private mount namespace (the shims' sockets are always under /run/containerd)."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{paths.containerd_root}"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{paths.containerd_socket}"
[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{paths.cni_conf_dir}"
"""


def cni_conflist(paths: NodePaths, index: int) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "aerocdn",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr(index)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.cni_ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def node_labels(node: RealNodeSpec) -> dict[str, str]:
    return {
        "topology.kubernetes.io/region": node.region,
        "topology.kubernetes.io/zone": node.zone,
        NODE_KIND_LABEL: REAL,
        "aerocdn.dev/local-cluster": "true",
    }


def kubelet_config(paths: NodePaths, net: NodeNetwork, index: int, ca: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.node_ip(index),
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{net.cgroup(index)}",
        "failCgroupV1": False,  # this host has cgroup v1
        "failSwapOn": False,
        "makeIPTablesUtilChains": False,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(paths.resolv_conf),
        "podLogsDir": str(paths.var_log / "pods"),
        "registerWithTaints": [REAL_NODE_TAINT],
        # Images are imported, never pulled: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "maxPods": 60,
        "podPidsLimit": 4096,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        "nodeStatusReportFrequency": "10s",
    }


def kubelet_argv(bin_dir: Path, paths: NodePaths, net: NodeNetwork, index: int,
                 node: RealNodeSpec) -> list[str]:
    labels = ",".join(f"{k}={v}" for k, v in node_labels(node).items())
    return [
        str(bin_dir / "kubelet"),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={paths.kubelet_kubeconfig}",
        f"--root-dir={paths.kubelet_dir}",
        f"--hostname-override={node.name}",
        f"--node-ip={net.node_ip(index)}",
        f"--node-labels={labels}",
        "--v=1",
    ]


def kube_proxy_config(paths: NodePaths, net: NodeNetwork, index: int,
                      node: RealNodeSpec) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(paths.kube_proxy_kubeconfig)},
        "hostnameOverride": node.name,
        "bindAddress": net.node_ip(index),
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "clusterCIDR": CLUSTER_POD_CIDR,
        "mode": "iptables",
        # 0: leave the conntrack table size and timeouts as they are (nf_conntrack_max is
        # machine-wide; kube-proxy would raise it).
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }


def corefile(net: NodeNetwork, kubeconfig: Path) -> str:
    """Cluster names only (no `forward`: nothing else is resolved, no query leaves the run)."""
    return f""".:53 {{
    bind {net.dns_ip}
    errors
    health {net.dns_ip}:8080
    ready {net.dns_ip}:8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""


def mount_namespace_script(paths: NodePaths, covers: dict[str, str]) -> str:
    """Shell run first in the node's private mount namespace, before `exec "$@"`.

    /run becomes a tmpfs (containerd's state, the shims' sockets, the pods' network namespace
    mounts), /var/lib and /var/log are bound to the node's directory, and each /proc/sys file in
    `covers` is covered by a file holding the value the kubelet wants. None of it is seen
    outside, and all of it goes when the node's last process exits."""
    lines = [
        "set -eu",
        "mount --make-rprivate /",
        "mount -t tmpfs -o mode=0755 tmpfs /run",
        f"mount --bind {paths.var_lib} /var/lib",
        f"mount --bind {paths.var_log} /var/log",
    ]
    for name, _value in sorted(covers.items()):
        lines.append(f"mount --bind {paths.sysctl_dir / name.replace('/', '.')} /proc/sys/{name}")
    lines.append('exec "$@"')
    return "\n".join(lines) + "\n"


def sysctl_covers(current: dict[str, str]) -> dict[str, str]:
    """The kubelet's tunables whose current value (as read on the host) differs from its."""
    return {k: v for k, v in KUBELET_KERNEL_TUNABLES.items() if current.get(k) != v}


def pause_image_archive(pause: bytes, tag: str = PAUSE_IMAGE) -> bytes:
    """A docker-archive (what `ctr images import` reads) of a one-file image: /pause."""

    def tar_of(files: dict[str, tuple[bytes, int]]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, (data, mode) in sorted(files.items()):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, 0
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    layer = tar_of({"pause": (pause, 0o755)})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag],
                            "Layers": ["layer/layer.tar"]}]).encode()
    return tar_of({"manifest.json": (manifest, 0o644), config_name: (config, 0o644),
                   "layer/layer.tar": (layer, 0o644)})


def dns_objects(net: NodeNetwork) -> list[dict[str, Any]]:
    """CoreDNS's read access, and the `kube-dns` Service whose endpoint is CoreDNS in the hub."""
    name = "aerocdn-local-coredns"
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"},
             {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name},
         "rules": [
             {"apiGroups": [""], "resources": ["services", "namespaces", "pods"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["list", "watch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": name},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                       "name": "system:coredns"}]},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system",
                      "labels": {"k8s-app": "kube-dns"}},
         "spec": {"clusterIP": DNS_SERVICE_IP,
                  "ports": [{**p, "targetPort": 53} for p in ports]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "kube-dns-local", "namespace": "kube-system",
                      "labels": {"kubernetes.io/service-name": "kube-dns",
                                 "endpointslice.kubernetes.io/managed-by":
                                     "localcluster.aerocdn.dev"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [net.dns_ip], "conditions": {"ready": True}}],
         "ports": ports},
    ]


def api_path(obj: dict[str, Any]) -> str:
    """The collection URL to POST `obj` to."""
    group, _, version = obj["apiVersion"].rpartition("/")
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    ns = obj["metadata"].get("namespace")
    plural = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
              "Service": "services", "EndpointSlice": "endpointslices"}[obj["kind"]]
    return f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
