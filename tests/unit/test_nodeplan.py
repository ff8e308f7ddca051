"""The real nodes of the local cluster, as data: names, addresses, configs (no I/O)."""

from __future__ import annotations

import io
import ipaddress
import json
import tarfile
from pathlib import Path

from aerocdn_localcluster import nodeplan, plan


def test_subnet_skips_what_the_host_already_uses() -> None:
    assert nodeplan.choose_subnet(["127.0.0.1", "192.168.1.4"]) == 1
    assert nodeplan.choose_subnet(["10.201.1.1", "10.201.2.7", "10.200.3.1"]) == 3


def test_kwok_and_real_node_pod_ranges_never_overlap() -> None:
    kwok = ipaddress.ip_network(plan.POD_CIDR)
    nodes = [ipaddress.ip_network(nodeplan.pod_cidr(i)) for i in range(3)]
    cluster = ipaddress.ip_network(nodeplan.CLUSTER_POD_CIDR)
    for i, n in enumerate(nodes):
        assert not n.overlaps(kwok) and n.subnet_of(cluster)  # type: ignore[arg-type]
        assert all(not n.overlaps(m) for m in nodes[i + 1:])
    assert kwok.subnet_of(cluster)  # type: ignore[arg-type]
    # the node network is outside both the pod and the service ranges
    net = nodeplan.NodeNetwork(run_id="abcdef", subnet=7)
    node_net = ipaddress.ip_network(f"{net.host_ip}/24", strict=False)
    assert not node_net.overlaps(cluster)
    assert not node_net.overlaps(ipaddress.ip_network(plan.SERVICE_CIDR))


def test_interface_and_namespace_names_fit_and_are_per_run() -> None:
    a = nodeplan.NodeNetwork(run_id="abcdef", subnet=1)
    b = nodeplan.NodeNetwork(run_id="123456", subnet=2)
    assert len(a.host_link) <= 15  # IFNAMSIZ - 1
    names = {a.hub_netns, a.node_netns(0), a.node_netns(1), a.host_link, a.cgroup(0)}
    assert not names & {b.hub_netns, b.node_netns(0), b.host_link, b.cgroup(0)}
    cmds = nodeplan.network_setup(a, 2)
    # every command names only this run's namespaces; nothing touches host sysctls or routes
    assert all(c[0] == "ip" for c in cmds)
    assert not [c for c in cmds if c[:2] == ["ip", "route"] or ("sysctl" in c and
                c[:3] != ["ip", "netns", "exec"])]
    assert ["ip", "-n", a.node_netns(0), "route", "add", nodeplan.pod_cidr(1), "via",
            a.node_ip(1)] in cmds
    # pod to pod across nodes is not masqueraded (the rule lives in the node's namespace)
    unnat = ["ip", "netns", "exec", a.node_netns(1), "iptables", "-t", "nat", "-A",
             "POSTROUTING", "-s", nodeplan.pod_cidr(1), "-d", nodeplan.CLUSTER_POD_CIDR,
             "-j", "RETURN"]
    assert unnat in cmds
    teardown = nodeplan.network_teardown(a, 2)
    assert ["ip", "netns", "del", a.hub_netns] in teardown


def test_only_differing_kernel_tunables_are_covered() -> None:
    current = dict(nodeplan.KUBELET_KERNEL_TUNABLES) | {"kernel/panic": "0"}
    assert nodeplan.sysctl_covers(current) == {"kernel/panic": "10"}
    script = nodeplan.mount_namespace_script(nodeplan.NodePaths(Path("/w")), {"kernel/panic": "10"})
    assert "mount --bind /w/sysctl/kernel.panic /proc/sys/kernel/panic" in script
    assert script.rstrip().endswith('exec "$@"')


def test_kubelet_registers_tainted_and_labelled_with_its_own_cgroup() -> None:
    net = nodeplan.NodeNetwork(run_id="abcdef", subnet=3)
    paths = nodeplan.NodePaths(Path("/w/nodes/real-0"))
    config = nodeplan.kubelet_config(paths, net, 0, Path("/w/pki/ca.crt"))
    assert config["registerWithTaints"] == [nodeplan.REAL_NODE_TAINT]
    assert config["cgroupRoot"] == f"/{net.cgroup(0)}"
    assert config["clusterDNS"] == [nodeplan.DNS_SERVICE_IP]
    argv = nodeplan.kubelet_argv(Path("/bin"), paths, net, 0, nodeplan.RealNodeSpec("real-0"))
    assert f"--node-ip={net.node_ip(0)}" in argv
    assert any(a.startswith("--node-labels=") and "aerocdn.dev/node=real" in a for a in argv)
    conflist = nodeplan.cni_conflist(paths, 0)
    assert conflist["plugins"][0]["ipam"]["ranges"] == [[{"subnet": nodeplan.pod_cidr(0)}]]


def test_pause_image_archive_is_a_docker_archive_and_deterministic() -> None:
    archive = nodeplan.pause_image_archive(b"\x7fELF fake")
    assert archive == nodeplan.pause_image_archive(b"\x7fELF fake")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        (manifest,) = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest["RepoTags"] == [nodeplan.PAUSE_IMAGE]
        config = json.loads(tar.extractfile(manifest["Config"]).read())  # type: ignore[union-attr]
        assert config["config"]["Entrypoint"] == ["/pause"]
        layer = tar.extractfile(manifest["Layers"][0]).read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        assert inner.extractfile("pause").read() == b"\x7fELF fake"  # type: ignore[union-attr]


def test_apiserver_listens_where_pods_reach_it_only_with_real_nodes() -> None:
    layout = plan.Layout(workdir=Path("/w"), bin_dir=Path("/b"))
    ports = plan.Ports(1, 2, 3, 4, 5)
    alone = plan.kube_apiserver(layout, ports).argv
    assert "--bind-address=127.0.0.1" in alone and "--endpoint-reconciler-type=none" in alone
    real = plan.kube_apiserver(layout, ports, address="10.201.1.1", real_nodes=True).argv
    assert "--bind-address=10.201.1.1" in real and "--advertise-address=10.201.1.1" in real
    assert "--endpoint-reconciler-type=none" not in real
    assert "--kubelet-preferred-address-types=InternalIP" in real
    (server,) = [c for c in plan.certificates(address="10.201.1.1", real_nodes=("real-0",))
                 if c.name == "apiserver"]
    assert {"127.0.0.1", "10.201.1.1", "10.96.0.1"} <= set(server.ip_sans)
    names = {c.name for c in plan.certificates(address="10.201.1.1", real_nodes=("real-0",))}
    assert {"node-real-0", "kube-proxy", "coredns", "apiserver-kubelet-client"} <= names
