"""What the local control plane runs: pure functions from a layout to command lines and objects.

Nothing here starts a process or touches the network; `cluster.py` does that with these values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
# Without real nodes these are data only: ClusterIPs and pod IPs are written to etcd but nothing
# routes to them, and nothing may connect to them from this machine. With real nodes they exist
# inside the nodes' network namespaces (nodeplan.py). kwok's pods get the lower half of the pod
# range, real node i 10.244.(128+i).0/24: the two never overlap.
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/17"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# kwok's convention: nodes carrying this annotation are simulated by kwok.
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"
MANAGED_LABEL = "aerocdn.dev/local-cluster"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
# Admission plugins a kubeadm cluster enables on top of kube-apiserver's default-on set
# (NamespaceLifecycle, LimitRanger, ServiceAccount, PodSecurity, Priority, ResourceQuota,
# DefaultTolerationSeconds, the webhook and admission-policy plugins, ...).
EXTRA_ADMISSION_PLUGINS = ("NodeRestriction",)


@dataclass(frozen=True)
class NodeSpec:
    """One simulated node."""

    name: str
    region: str
    zone: str
    cpu: str = "32"
    memory: str = "128Gi"
    pods: str = "250"


def default_nodes() -> tuple[NodeSpec, ...]:
    """Six nodes over three zones in two regions (two nodes per zone)."""
    zones = (("eu-west", "eu-west-a"), ("eu-west", "eu-west-b"), ("us-east", "us-east-a"))
    return tuple(
        NodeSpec(name=f"kwok-{zone}-{i}", region=region, zone=zone)
        for region, zone in zones
        for i in range(2)
    )


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int


@dataclass(frozen=True)
class Layout:
    """Where everything lives on disk for one run."""

    workdir: Path
    bin_dir: Path

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.workdir / "etcd"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def component_kubeconfig(self, component: str) -> Path:
        return self.workdir / f"{component}.kubeconfig"

    @property
    def kwok_stages(self) -> Path:
        return self.bin_dir / "kwok-stages.yaml"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name


@dataclass(frozen=True)
class Certificate:
    """A certificate to issue from the cluster CA."""

    name: str
    common_name: str
    organizations: tuple[str, ...] = ()
    server: bool = False
    ip_sans: tuple[str, ...] = ()
    dns_sans: tuple[str, ...] = ()


def certificates(
    *, address: str = LOOPBACK, real_nodes: tuple[str, ...] = ()
) -> tuple[Certificate, ...]:
    """Every certificate the control plane needs, issued by one CA.

    `address`: where the API server listens (loopback, or the uplink when there are real
    nodes). `real_nodes`: node names, each getting a kubelet client certificate; with real
    nodes the API server also gets a client certificate towards kubelets, kube-proxy and
    CoreDNS one each."""
    node_certs: tuple[Certificate, ...] = ()
    if real_nodes:
        node_certs = (
            Certificate(name="apiserver-kubelet-client", common_name="kube-apiserver-kubelet",
                        organizations=("system:masters",)),
            Certificate(name="kube-proxy", common_name="system:kube-proxy"),
            Certificate(name="coredns", common_name="system:coredns"),
            *(Certificate(name=f"node-{n}", common_name=f"system:node:{n}",
                          organizations=("system:nodes",)) for n in real_nodes),
        )
    return (
        Certificate(
            name="apiserver",
            common_name="kube-apiserver",
            server=True,
            ip_sans=tuple(dict.fromkeys((LOOPBACK, address, first_service_ip(SERVICE_CIDR)))),
            dns_sans=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
        ),
        # The API server's client certificate towards aggregated API servers (front proxy).
        Certificate(name="front-proxy-client", common_name="front-proxy-client"),
        Certificate(name="admin", common_name="aerocdn-admin", organizations=("system:masters",)),
        Certificate(name="kube-controller-manager", common_name="system:kube-controller-manager"),
        Certificate(name="kube-scheduler", common_name="system:kube-scheduler"),
        # kwok plays the kubelets of every simulated node and writes their leases and pod status.
        Certificate(name="kwok", common_name="kwok-controller", organizations=("system:masters",)),
        *node_certs,
    )


def first_service_ip(cidr: str) -> str:
    """The ClusterIP of the `kubernetes` Service: the first address of the service range."""
    base, _, _ = cidr.partition("/")
    octets = [int(o) for o in base.split(".")]
    octets[3] += 1
    return ".".join(str(o) for o in octets)


def kubeconfig(
    *, server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str
) -> dict[str, Any]:
    """A kubeconfig with the credentials embedded (one cluster, one user, one context)."""
    import base64

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "aerocdn-local",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
            }
        ],
        "contexts": [
            {"name": "aerocdn-local", "context": {"cluster": "aerocdn-local", "user": user}}
        ],
        "current-context": "aerocdn-local",
    }


@dataclass(frozen=True)
class ProcessSpec:
    """One control plane process."""

    name: str
    argv: tuple[str, ...]


def etcd(layout: Layout, ports: Ports) -> ProcessSpec:
    client = f"http://{LOOPBACK}:{ports.etcd_client}"
    peer = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return ProcessSpec(
        name="etcd",
        argv=(
            str(layout.binary("etcd")),
            "--name=local",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=local={peer}",
            "--initial-cluster-state=new",
            # Throwaway data: no fsync keeps the API fast on a shared disk.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ),
    )


def kube_apiserver(
    layout: Layout, ports: Ports, *, address: str = LOOPBACK, real_nodes: bool = False
) -> ProcessSpec:
    """`address`: loopback, or (with real nodes) the host end of the nodes' uplink, which pods
    reach as the `kubernetes` Service (its Endpoints then hold that address)."""
    pki = layout.pki
    if real_nodes:
        nodes: tuple[str, ...] = (
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
        )
    else:
        # Nothing listens as the `kubernetes` Service's endpoint on loopback, and Endpoints
        # may not hold loopback addresses: don't reconcile that one object.
        nodes = ("--endpoint-reconciler-type=none",)
    return ProcessSpec(
        name="kube-apiserver",
        argv=(
            str(layout.binary("kube-apiserver")),
            f"--etcd-servers=http://{LOOPBACK}:{ports.etcd_client}",
            f"--bind-address={address}",
            f"--advertise-address={address}",
            f"--secure-port={ports.apiserver}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--authorization-mode=Node,RBAC",
            "--anonymous-auth=true",
            f"--enable-admission-plugins={','.join(EXTRA_ADMISSION_PLUGINS)}",
            "--allow-privileged=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            *nodes,
            "--profiling=false",
            "--v=0",
        ),
    )


def kube_controller_manager(layout: Layout, ports: Ports) -> ProcessSpec:
    pki = layout.pki
    kc = layout.component_kubeconfig("kube-controller-manager")
    return ProcessSpec(
        name="kube-controller-manager",
        argv=(
            str(layout.binary("kube-controller-manager")),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={ports.controller_manager}",
            "--leader-elect=false",
            # All default controllers: serviceaccount, serviceaccount-token, garbage collector,
            # namespace, deployment, replicaset, statefulset, daemonset, job, cronjob,
            # endpoints, endpointslice, disruption (PDB), node lifecycle, resource quota, ...
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
            "--v=0",
        ),
    )


def kube_scheduler(layout: Layout, ports: Ports) -> ProcessSpec:
    kc = layout.component_kubeconfig("kube-scheduler")
    return ProcessSpec(
        name="kube-scheduler",
        argv=(
            str(layout.binary("kube-scheduler")),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={ports.scheduler}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=0",
        ),
    )


def kwok(layout: Layout, ports: Ports) -> ProcessSpec:
    return ProcessSpec(
        name="kwok",
        argv=(
            str(layout.binary("kwok")),
            f"--config={layout.kwok_stages}",
            f"--kubeconfig={layout.component_kubeconfig('kwok')}",
            # Only the nodes this harness registers, never a real node of some other cluster.
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}={KWOK_ANNOTATION_VALUE}",
            f"--node-ip={LOOPBACK}",
            f"--cidr={POD_CIDR}",
            "--node-lease-duration-seconds=40",
        ),
    )


def processes(
    layout: Layout, ports: Ports, *, address: str = LOOPBACK, real_nodes: bool = False
) -> tuple[ProcessSpec, ...]:
    """Start order; stop in reverse."""
    return (
        etcd(layout, ports),
        kube_apiserver(layout, ports, address=address, real_nodes=real_nodes),
        kube_controller_manager(layout, ports),
        kube_scheduler(layout, ports),
        kwok(layout, ports),
    )


def node_object(node: NodeSpec, *, taint: bool = False) -> dict[str, Any]:
    """The Node object kwok simulates.

    kwok's taint (`kwok.x-k8s.io/node=fake:NoSchedule`) keeps real workloads off fake nodes in a
    cluster that mixes both. This cluster has only fake nodes, so it is off by default: the
    operator's pods must not need a kwok toleration to be scheduled.
    """
    resources = {"cpu": node.cpu, "memory": node.memory, "pods": node.pods}
    spec: dict[str, Any] = {}
    if taint:
        spec["taints"] = [
            {"key": KWOK_ANNOTATION, "value": KWOK_ANNOTATION_VALUE, "effect": "NoSchedule"}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "annotations": {
                KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": node.name,
                "type": "kwok",
                "aerocdn.dev/node": "kwok",
                MANAGED_LABEL: "true",
                REGION_LABEL: node.region,
                ZONE_LABEL: node.zone,
            },
        },
        "spec": spec,
        "status": {
            "allocatable": resources,
            "capacity": resources,
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
        },
    }


def node_is_ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
