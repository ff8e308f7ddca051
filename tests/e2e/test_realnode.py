"""The chart and a ContentEdge on a node that really runs pods (issue 10, Build 3).

The operator pods (2 replicas) start from the image, use their in-cluster ServiceAccount,
one leads (Lease), and the other takes over when the leader is killed. Edge pods (nginx +
`aerocdn edge`) of a ContentEdge placed on the real node pass their probes, serve an object
through the Service (MISS, then HIT) from a client pod and from the node's host side, purge
through the admin port, and keep serving through a rolling update.

Against KUBECONFIG (kind) the same tests run; the host-side request needs the local real node
and is skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.conftest import E2E, NAMESPACE, RELEASE
from tests.integration.operator_harness import Kubectl, condition, small_cc, wait_for

WAIT = float(os.environ.get("AEROCDN_TEST_WAIT", "300"))
OPERATOR = f"{RELEASE}-operator" if "aerocdn" in RELEASE else f"{RELEASE}-aerocdn-operator"
LEASE = "aerocdn-operator"
OBJECT = "/hello.txt"
BODY = "hello from the origin\n"
TOKEN = "e2e-purge-token"


@pytest.fixture(scope="module")
def kubectl(e2e: E2E) -> Kubectl:
    return Kubectl(e2e.kubeconfig)


def operator_pods(kubectl: Kubectl) -> list[dict[str, Any]]:
    return [p for p in kubectl.items("pod", NAMESPACE, "app.kubernetes.io/component=operator")
            if not p["metadata"].get("deletionTimestamp")]


def running_and_ready(pod: dict[str, Any]) -> bool:
    return (pod.get("status", {}).get("phase") == "Running"
            and condition(pod, "Ready").get("status") == "True")


def lease_holder(kubectl: Kubectl) -> str:
    lease = kubectl.get("lease", LEASE, NAMESPACE)
    return "" if lease is None else str(lease["spec"].get("holderIdentity") or "")


def test_both_operator_pods_run_on_the_node_and_one_leads(kubectl: Kubectl, e2e: E2E) -> None:
    pods = wait_for("2 operator pods Running and Ready",
                    lambda: (ps := operator_pods(kubectl)) and len(ps) == 2
                    and all(running_and_ready(p) for p in ps) and ps, timeout=WAIT)
    if e2e.node:
        assert {p["spec"]["nodeName"] for p in pods} == {e2e.node}
    names = {p["metadata"]["name"] for p in pods}
    holder = wait_for("a Lease holder", lambda: lease_holder(kubectl), timeout=WAIT)
    assert holder in names
    # the pods run the image's entrypoint: tini, with the operator as its child
    for pod in pods:
        out = kubectl.run("exec", "-n", NAMESPACE, pod["metadata"]["name"], "--",
                          "cat", "/proc/1/cmdline").stdout
        assert out.split("\0")[0] == "/usr/bin/tini", out


def test_the_leader_killed_the_other_takes_over(kubectl: Kubectl) -> None:
    pods = wait_for("2 operator pods ready",
                    lambda: (ps := operator_pods(kubectl)) and len(ps) == 2
                    and all(running_and_ready(p) for p in ps) and ps, timeout=WAIT)
    holder = wait_for("a Lease holder", lambda: lease_holder(kubectl), timeout=WAIT)
    (other,) = [p["metadata"]["name"] for p in pods if p["metadata"]["name"] != holder]
    killed = time.monotonic()
    kubectl.run("delete", "pod", "-n", NAMESPACE, holder, "--wait=false")
    try:
        # The standby normally wins; the Deployment's replacement pod may win the race on a
        # loaded machine (the property: leadership leaves the killed pod, to a live one).
        successor = wait_for(f"a pod other than {holder} to take the Lease over",
                             lambda: (h := lease_holder(kubectl)) not in ("", holder) and h,
                             timeout=WAIT, interval=0.2)
    except AssertionError:
        for pod in [p["metadata"]["name"] for p in operator_pods(kubectl)] + [holder]:
            logs = kubectl.run("logs", "-n", NAMESPACE, pod, "--tail=40", check=False)
            print(f"\n--- logs of {pod}:\n{logs.stdout}{logs.stderr}", file=sys.stderr)
        raise
    assert successor in {p["metadata"]["name"] for p in operator_pods(kubectl)}
    print(f"\nleadership moved {holder} -> {successor} "
          f"({'the standby' if successor == other else 'the replacement pod'}) in "
          f"{time.monotonic() - killed:.1f} s", file=sys.stderr)
    kubectl.run("rollout", "status", "-n", NAMESPACE, f"deployment/{OPERATOR}",
                f"--timeout={int(WAIT)}s")


# -- a ContentEdge on the real node ----------------------------------------------------------


def edge_spec(e2e: E2E, hosts: list[str]) -> dict[str, Any]:
    return {
        "hosts": hosts,
        "origin": {"url": "http://origin"},
        "imagePullPolicy": e2e.pull_policy,
        "placement": e2e.placement,
        "purgeTokenSecretRef": {"name": "purge", "key": "token"},
        "routing": {"slowStartSeconds": 0},
        "regions": [{"name": "eu-west", "cacheCluster": "cache", "replicas": 2}],
    }


def origin_objects(e2e: E2E) -> list[dict[str, Any]]:
    """A plain HTTP origin on the real node: Python's http.server in the aerocdn image."""
    labels = {"app": "origin"}
    script = (f"mkdir -p /tmp/www && printf '{BODY.strip()}\\n' > /tmp/www{OBJECT} && "
              "exec python3 -m http.server 8000 --bind 0.0.0.0 --directory /tmp/www")
    return [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "origin", "labels": labels},
         "spec": {**e2e_pod_placement(e2e), "containers": [
             {"name": "origin", "image": "aerocdn:0.1.0", "imagePullPolicy": e2e.pull_policy,
              "args": ["sh", "-c", script], "ports": [{"containerPort": 8000}],
              "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "origin"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8000}]}},
    ]


def e2e_pod_placement(e2e: E2E) -> dict[str, Any]:
    return dict(e2e.placement)


def client_pod(e2e: E2E) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
            "spec": {**e2e_pod_placement(e2e), "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "client", "image": "aerocdn:0.1.0",
                                     "imagePullPolicy": e2e.pull_policy,
                                     "args": ["sleep", "infinity"]}]}}


# A request as a client does it: GET through the Service by its DNS name (or an address), with
# the ContentEdge's host. Prints status, X-Cache and the body as JSON.
FETCH = """
import json, sys, urllib.request, urllib.error
url, host = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url, headers={"Host": host})
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(json.dumps([r.status, r.headers.get("X-Cache"), r.read().decode()]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, e.headers.get("X-Cache"), e.read().decode()]))
"""

# Requests in a loop until the file named by argv[3] exists; prints {status: count}.
LOOP = """
import json, os, sys, time, urllib.request, urllib.error
url, host, stop = sys.argv[1], sys.argv[2], sys.argv[3]
counts = {}
while not os.path.exists(stop):
    req = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read(); key = str(r.status)
    except urllib.error.HTTPError as e:
        key = str(e.code)
    except Exception as e:
        key = type(e).__name__
    counts[key] = counts.get(key, 0) + 1
    time.sleep(0.02)
print(json.dumps(counts))
"""


class Site:
    """One namespace with an origin, a CacheCluster (kwok nodes), a ContentEdge whose edge
    pods run on the real node, and a client pod beside them."""

    def __init__(self, kubectl: Kubectl, e2e: E2E) -> None:
        self.kubectl, self.e2e = kubectl, e2e
        self.ns = f"e2e-{uuid.uuid4().hex[:8]}"
        self.host = "site.example.com"

    def create(self) -> None:
        k = self.kubectl
        k.run("create", "namespace", self.ns)
        k.run("create", "secret", "generic", "purge", "-n", self.ns,
              f"--from-literal=token={TOKEN}")
        k.apply(*origin_objects(self.e2e), client_pod(self.e2e), namespace=self.ns)
        # its pods stay on kwok nodes (no Aerospike in CI): the edges find it by name but
        # cannot reach it, and serve from nginx (L1) and the origin
        k.apply(small_cc("cache", "eu-west", size=1), namespace=self.ns)
        k.apply({"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
                 "metadata": {"name": "site"}, "spec": edge_spec(self.e2e, [self.host])},
                namespace=self.ns)

    def edge_pods(self) -> list[dict[str, Any]]:
        return [p for p in self.kubectl.items("pod", self.ns, "aerocdn.dev/contentedge=site")
                if not p["metadata"].get("deletionTimestamp")]

    def service(self) -> dict[str, Any]:
        (svc,) = [s for s in self.kubectl.items("service", self.ns,
                                                 "aerocdn.dev/contentedge=site")
                  if s["spec"].get("clusterIP") not in (None, "None")]
        return svc

    def url(self, by: str = "dns") -> str:
        svc = self.service()
        port = svc["spec"]["ports"][0]["port"]
        where = (f"{svc['metadata']['name']}.{self.ns}.svc" if by == "dns"
                 else svc["spec"]["clusterIP"])
        return f"http://{where}:{port}"

    def in_client(self, *argv: str) -> str:
        return self.kubectl.run("exec", "-n", self.ns, "client", "--", *argv).stdout

    def fetch_from_client(self, path: str = OBJECT) -> tuple[int, str | None, str]:
        status, cache, body = json.loads(self.in_client("python3", "-c", FETCH,
                                                        self.url() + path, self.host))
        return status, cache, body

    def delete(self) -> None:
        self.kubectl.run("delete", "namespace", self.ns, "--timeout=300s", check=False)


@pytest.fixture(scope="module")
def site(kubectl: Kubectl, e2e: E2E) -> Iterator[Site]:
    s = Site(kubectl, e2e)
    s.create()
    try:
        wait_for("ContentEdge site Ready",
                 lambda: (ce := kubectl.get("ce", "site", s.ns))
                 and condition(ce, "Ready").get("status") == "True", timeout=WAIT, interval=1)
        wait_for("2 edge pods ready", lambda: len(ps := s.edge_pods()) == 2
                 and all(running_and_ready(p) for p in ps), timeout=WAIT, interval=1)
        wait_for("origin and client running", lambda: all(
            (p := kubectl.get("pod", n, s.ns)) and running_and_ready(p)
            for n in ("origin", "client")), timeout=WAIT, interval=1)
        yield s
    finally:
        s.delete()


def test_edge_pods_run_the_image_on_the_node_and_pass_probes(site: Site, e2e: E2E) -> None:
    for pod in site.edge_pods():
        if e2e.node:
            assert pod["spec"]["nodeName"] == e2e.node
        statuses = {c["name"]: c for c in pod["status"]["containerStatuses"]}
        assert {n: c["ready"] for n, c in statuses.items()} == {"nginx": True, "edge": True}
        assert all(c["state"].get("running") for c in statuses.values())
        assert all(c["imageID"] for c in statuses.values())  # really started from an image
        for name in ("nginx", "edge"):  # tini is PID 1 of both containers
            out = site.kubectl.run("exec", "-n", site.ns, pod["metadata"]["name"], "-c", name,
                                   "--", "cat", "/proc/1/cmdline").stdout
            assert out.split("\0")[0] == "/usr/bin/tini", (name, out)


def test_a_client_pod_gets_the_object_through_the_service_miss_then_hit(site: Site) -> None:
    # The Service by its DNS name (CoreDNS), the origin by its (the edge resolves `origin`).
    first = site.fetch_from_client()
    assert first[0] == 200 and first[2] == BODY, first
    second = wait_for("an L1 HIT", lambda: (r := site.fetch_from_client())[1] == "HIT" and r,
                      timeout=60, interval=0.5)
    assert second[0] == 200 and second[2] == BODY
    # an unknown host is refused by nginx, never sent to the origin
    status, _, _ = json.loads(site.in_client("python3", "-c", FETCH, site.url() + OBJECT,
                                             "other.example.com"))
    assert status == 421


def test_the_host_side_of_the_node_reaches_the_service(site: Site, e2e: E2E) -> None:
    if e2e.cluster is None:
        pytest.skip("needs the local real node (a shell in its network namespace)")
    site.fetch_from_client()
    result = e2e.host_run([sys.executable, "-c", FETCH, site.url("ip") + OBJECT, site.host])
    assert result.returncode == 0, result.stderr
    status, _cache, body = json.loads(result.stdout)
    assert (status, body) == (200, BODY)


def test_purge_through_the_admin_port(site: Site) -> None:
    wait_for("an L1 HIT", lambda: site.fetch_from_client()[1] == "HIT", timeout=60, interval=0.5)
    pod_ip = site.edge_pods()[0]["status"]["podIP"]
    purge = (
        "import json, sys, urllib.error, urllib.request\n"
        "req = urllib.request.Request(sys.argv[1], method='POST', data=sys.argv[2].encode(),\n"
        "    headers={'Authorization': 'Bearer ' + sys.argv[3],"
        " 'Content-Type': 'application/json'})\n"
        "try:\n"
        "    with urllib.request.urlopen(req, timeout=20) as r:\n"
        "        print(json.dumps([r.status, json.loads(r.read())]))\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(json.dumps([e.code, json.loads(e.read())]))\n"
    )
    status, report = json.loads(site.in_client(
        "python3", "-c", purge, f"http://{pod_ip}:9091/purge",
        json.dumps({"url": f"http://{site.host}{OBJECT}"}), TOKEN))
    # the pod asked and its peer (found through the headless Service) both answered and
    # purged their nginx cache; the object was cached by whichever pod(s) served it
    pods = report["pods"]
    assert len(pods) == 2, json.dumps(report)
    assert all(r["l1"]["failed"] == 0 for r in pods.values()), pods
    assert sum(r["l1"]["purged"] for r in pods.values()) >= 1, pods
    # the L2 tier is the CacheCluster: reachable only where Aerospike runs (not on kwok nodes);
    # the answer says exactly that, and is complete (200) only if every pod confirmed
    assert report["complete"] == all(r["ok"] for r in pods.values())
    assert status == (200 if report["complete"] else 502)
    after = site.fetch_from_client()
    assert after[0] == 200 and after[1] != "HIT" and after[2] == BODY, after


def test_a_contentpurge_is_carried_to_each_edge_pod_by_the_operator(site: Site) -> None:
    # the operator pod (chart, in-cluster RBAC) calls each edge pod's admin port itself, over
    # the pod network, with the token of the ContentEdge's Secret
    wait_for("an L1 HIT", lambda: site.fetch_from_client()[1] == "HIT", timeout=60, interval=0.5)
    pods = {p["metadata"]["name"] for p in site.edge_pods()}
    site.kubectl.apply({"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentPurge",
                        "metadata": {"name": "hello"},
                        "spec": {"contentEdgeRef": {"name": "site"},
                                 "urls": [f"{site.host}{OBJECT}"]}}, namespace=site.ns)

    def states() -> dict[str, dict[str, Any]]:
        cp = site.kubectl.get("contentpurge", "hello", site.ns) or {}
        return {p["name"]: p for r in (cp.get("status") or {}).get("regions", [])
                for p in r["pods"]}
    answered = wait_for("every edge pod answered the operator", lambda: (s := states())
                        and set(s) == pods and all(p["attempts"] >= 1 for p in s.values())
                        and s, timeout=WAIT, interval=1)
    print("\nContentPurge pods: " + "; ".join(f"{n}: {p['state']} {p['message']}"
                                             for n, p in sorted(answered.items())),
          file=sys.stderr)
    for p in answered.values():
        # each pod purged its nginx and answered for itself; its L2 is the CacheCluster,
        # whose pods are on kwok nodes (no Aerospike): the pod says so and is retried
        assert p["state"] == "Confirmed" or p["message"].startswith("L2 cache: "), p
    cp = site.kubectl.get("contentpurge", "hello", site.ns)
    assert (condition(cp, "Complete").get("status") == "True") == all(
        p["state"] == "Confirmed" for p in answered.values())
    after = site.fetch_from_client()
    assert after[0] == 200 and after[1] != "HIT" and after[2] == BODY, after


def test_a_rolling_update_keeps_serving(site: Site, e2e: E2E) -> None:
    before = {p["metadata"]["name"] for p in site.edge_pods()}
    stop = f"/tmp/stop-{uuid.uuid4().hex[:8]}"
    loop = subprocess.Popen(
        ["kubectl", "--kubeconfig", e2e.kubeconfig, "exec", "-n", site.ns, "client", "--",
         "python3", "-c", LOOP, site.url() + OBJECT, site.host, stop],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # requests are flowing before the roll starts
        time.sleep(2)
        # a second host changes nginx.conf, so the pods roll
        site.kubectl.apply({"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
                            "metadata": {"name": "site"},
                            "spec": edge_spec(e2e, [site.host, "alt.example.com"])},
                           namespace=site.ns)
        wait_for("every edge pod replaced and ready",
                 lambda: len(ps := site.edge_pods()) == 2
                 and not ({p["metadata"]["name"] for p in ps} & before)
                 and all(running_and_ready(p) for p in ps), timeout=WAIT, interval=1)
        time.sleep(2)  # and a little after
    finally:
        site.in_client("touch", stop)
        out, err = loop.communicate(timeout=60)
    counts = json.loads(out.strip().splitlines()[-1])
    print(f"\nrequests during the roll: {counts}", file=sys.stderr)
    assert counts.get("200", 0) > 0, (counts, err)
    assert set(counts) == {"200"}, f"failed requests during the roll: {counts}"
