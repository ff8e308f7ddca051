"""The live tier (issue 10 item 4): real Aerospike pods on real nodes, judged by the operator
as in production (the chart's operator pods, `--aerospike-probe=aerospike`: info calls to
the pod IPs).

Runs where an asd binary is given (AEROCDN_TEST_ASD=/path/to/asd) and real nodes can start
(root, scripts/bootstrap.sh); skipped with the reason otherwise. The module starts its own
local cluster with three real nodes, builds an Aerospike image from the binary
(scripts/aerospike-image.sh, cached by the binary's hash) beside the aerocdn image, installs
the chart, and creates a CacheCluster of three pods (one per node, 512Mi in-memory namespace,
replication factor 2). Clients of Aerospike (tests/e2e/aerospike_load.py) run in real-0's
network namespace, where pod IPs are routed. Every acknowledged write of every scenario is
read back at the end of each scenario: none may be missing.

- scale 3 -> 2 while a client writes continuously;
- `kubectl drain` of a node while data migrates (a scale 2 -> 3 just began): the
  PodDisruptionBudget refuses the eviction until the readiness gate aerocdn.dev/cluster-stable
  is True again (all containers are ready throughout: the gate alone holds the drain; the
  reference operator loses data here, AKO #489);
- a static configuration change restarts the pods one at a time, each only once the
  cluster is stable again;
- edges of a ContentEdge on the real nodes use the CacheCluster as their L2.

Figures (acknowledged/found records, how long the drain was held, the roll order) are printed
(`pytest -s`) and asserted only as properties, never as timings.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from tests.e2e.conftest import (
    E2E,
    aerospike_image_archive,
    fail_or_skip,
    image_archive,
    install_chart,
    real_node_placement,
)
from tests.integration.operator_harness import Kubectl, condition, is_ready, wait_for

from aerocdn_localcluster import ClusterError, LocalCluster, realnode

ENV = "AEROCDN_TEST_ASD"
pytestmark = [
    pytest.mark.aerospike,
    # the module's fixture builds images and starts a cluster before its first test
    pytest.mark.timeout(3600),
    pytest.mark.skipif(not os.environ.get(ENV), reason=f"{ENV}=/path/to/asd is not set: no "
                       "Aerospike server binary to build the Aerospike image from"),
]

WAIT = float(os.environ.get("AEROCDN_TEST_WAIT", "300"))
CC = "live"
GATE = "aerocdn.dev/cluster-stable"
SELECTOR = f"aerocdn.dev/cachecluster={CC}"
LOAD = Path(__file__).with_name("aerospike_load.py")
REFUSED = "violate the pod's disruption budget"
PRELOAD = 30000


def figure(what: str, value: Any) -> None:
    print(f"\nlive tier: {what}: {value}", file=sys.stderr)


@dataclass
class Live:
    cluster: LocalCluster
    kubectl: Kubectl
    api: client.ApiClient
    ns: str
    image: str
    workdir: Path
    # where Aerospike clients run: a real node's network namespace (pod IPs are routed there)
    client_netns: str
    # files of acknowledged keys written so far (each scenario adds its own)
    acked: list[Path] = field(default_factory=list)

    def cc(self) -> dict[str, Any]:
        obj = self.kubectl.get("cc", CC, self.ns)
        assert obj is not None
        return obj

    def pods(self) -> list[dict[str, Any]]:
        return self.kubectl.items("pod", self.ns, SELECTOR)

    def hosts(self) -> str:
        ips = [p["status"]["podIP"] for p in self.pods()
               if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")]
        assert ips, "no Aerospike pod has an address"
        return ",".join(f"{ip}:3000" for ip in ips)

    def load(self, *args: str, timeout: float = 300) -> dict[str, Any]:
        """aerospike_load.py run to completion on the client side; its JSON summary."""
        out = subprocess.run(["ip", "netns", "exec", self.client_netns, sys.executable,
                              str(LOAD), *args], capture_output=True, text=True,
                             timeout=timeout, check=False)
        assert out.returncode == 0, f"aerospike_load.py {args[0]} failed: {out.stderr[-2000:]}"
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    def check_all(self) -> dict[str, Any]:
        """Every key acknowledged so far, read back."""
        args = ["check", "--hosts", self.hosts()]
        for path in self.acked:
            args += ["--keys", str(path)]
        return self.load(*args)

    def settle(self, size: int) -> dict[str, Any]:
        """spec.size = size, then wait until the cluster is Ready with that many pods, every
        pod's gate True (Aerospike stable, no migrations)."""
        if self.cc()["spec"]["size"] != size:
            self.kubectl.run("patch", "cc", CC, "-n", self.ns, "--type=merge",
                             "-p", json.dumps({"spec": {"size": size}}))

        def settled() -> dict[str, Any] | None:
            cc = self.cc()
            pods = [p for p in self.pods() if not p["metadata"].get("deletionTimestamp")]
            ok = (is_ready(cc) and cc["status"].get("replicas") == size
                  and cc["status"].get("readyReplicas") == size and len(pods) == size
                  and all(condition(p, GATE).get("status") == "True" for p in pods))
            return cc if ok else None

        result: dict[str, Any] = wait_for(f"CacheCluster {CC} Ready with {size} pods",
                                          settled, timeout=WAIT * 2, interval=1)
        return result


def cachecluster(image: str, size: int) -> dict[str, Any]:
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
            "metadata": {"name": CC},
            "spec": {"region": "eu-west", "size": size, "image": image,
                     "imagePullPolicy": "Never", "placement": real_node_placement(),
                     "namespaces": [{"name": "cache", "replicationFactor": 2,
                                     "storage": {"type": "memory", "size": "512Mi"}}]}}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if os.environ.get("KUBECONFIG"):
        pytest.skip("the live tier runs on the local cluster's real nodes (it imports the "
                    "Aerospike image and runs its clients in a node's network namespace); "
                    "unset KUBECONFIG")
    asd = Path(os.environ[ENV])
    if not (asd.is_file() and os.access(asd, os.X_OK)):
        pytest.fail(f"{ENV}={asd} is not an executable file", pytrace=False)
    try:
        realnode.check_host()
        aerocdn = image_archive()
        archive, image = aerospike_image_archive(asd)
    except ClusterError as e:
        fail_or_skip(str(e))
    cluster = LocalCluster(real_nodes=3, images=(aerocdn, archive))
    try:
        cluster.start()
    except ClusterError as e:
        fail_or_skip(str(e))
    api: client.ApiClient | None = None
    try:
        env = E2E(kubeconfig=str(cluster.kubeconfig), cluster=cluster,
                  node=cluster.real_nodes[0].name, placement=real_node_placement(),
                  pull_policy="Never")
        install_chart(env, aerospike_probe="aerospike")
        kubectl = Kubectl(env.kubeconfig)
        api = config.new_client_from_config(config_file=env.kubeconfig)
        ns = "live"
        kubectl.run("create", "namespace", ns)
        kubectl.apply(cachecluster(image, 3), namespace=ns)
        env_live = Live(cluster=cluster, kubectl=kubectl, api=api, ns=ns, image=image,
                        workdir=tmp_path_factory.mktemp("live"),
                        client_netns=cluster.netns(cluster.real_nodes[0].name))
        cc = env_live.settle(3)
        assert cc["status"]["probe"] == "aerospike"
        nodes = {p["spec"]["nodeName"] for p in env_live.pods()}
        assert len(nodes) == 3, f"the 3 Aerospike pods share nodes: {nodes}"
        # records to migrate: each scenario moves them about
        pre = env_live.workdir / "preload.acked"
        summary = env_live.load("write", "--hosts", env_live.hosts(), "--acked", str(pre),
                                "--count", str(PRELOAD), "--size", "1024")
        assert summary["acked"] == PRELOAD, summary
        env_live.acked.append(pre)
        figure("preloaded", summary)
        yield env_live
    finally:
        if api is not None:
            api.close()
        cluster.stop()


# -- pods as the API saw them, in order ----------------------------------------------------


@dataclass(frozen=True)
class PodState:
    name: str
    uid: str
    node: str | None
    running: bool
    containers_ready: bool
    gate: str | None
    gate_reason: str | None
    deleting: bool
    restarts: int = 0

    @property
    def up(self) -> bool:
        return self.running and self.containers_ready and not self.deleting


@dataclass(frozen=True)
class Moment:
    """The pods after one watch event (`at`: time.monotonic() when it arrived)."""

    at: float
    wall: float  # time.time() when it arrived
    event: str
    pod: PodState
    pods: dict[str, PodState]


def pod_state(obj: dict[str, Any]) -> PodState:
    meta, status = obj["metadata"], obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    gate = condition(obj, GATE)
    return PodState(
        name=meta["name"], uid=meta["uid"], node=(obj.get("spec") or {}).get("nodeName"),
        running=status.get("phase") == "Running",
        containers_ready=bool(statuses) and all(c.get("ready") for c in statuses),
        gate=gate.get("status"), gate_reason=gate.get("reason"),
        deleting=bool(meta.get("deletionTimestamp")),
        restarts=sum(int(c.get("restartCount") or 0) for c in statuses))


class PodTimeline:
    """Every change of the CacheCluster's pods, in the order etcd wrote them (one watch)."""

    def __init__(self, live: Live):
        self.moments: list[Moment] = []
        self._pods: dict[str, PodState] = {}
        self._watch = watch.Watch()
        self._stopped = False
        self._api = live.api
        self._core = client.CoreV1Api(live.api)
        self._ns = live.ns
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_for("the pod watch to list the pods", lambda: self.moments, timeout=60)

    def _run(self) -> None:
        try:
            for event in self._watch.stream(self._core.list_namespaced_pod, self._ns,
                                            label_selector=SELECTOR, timeout_seconds=3600,
                                            _request_timeout=3700):
                obj = self._api.sanitize_for_serialization(event["object"])
                state = pod_state(obj)
                if event["type"] == "DELETED":
                    if self._pods.get(state.name, state).uid == state.uid:
                        self._pods.pop(state.name, None)
                else:
                    self._pods[state.name] = state
                self.moments.append(Moment(time.monotonic(), time.time(), event["type"], state,
                                           dict(self._pods)))
        except Exception:
            if not self._stopped:
                raise

    def stop(self) -> list[Moment]:
        self._stopped = True
        self._watch.stop()
        return list(self.moments)


def describe(moments: list[Moment]) -> str:
    """The timeline, one line per event (for failure messages)."""
    t0 = moments[0].at if moments else 0.0
    lines = []
    for m in moments:
        p = m.pod
        lines.append(f"{m.at - t0:7.1f} {m.event:8} {p.name} {p.uid[:8]} running={p.running} "
                     f"ready={p.containers_ready} deleting={p.deleting} restarts={p.restarts} "
                     f"gate={p.gate}/{p.gate_reason}")
    return "\n".join(lines)


def opened_at(moments: list[Moment]) -> float:
    """When the last gate turned True (from False or unset) in `moments`."""
    gate: dict[str, str | None] = {}
    last = moments[0].at if moments else 0.0
    for m in moments:
        if m.pod.gate == "True" and gate.get(m.pod.uid) != "True":
            last = m.at
        gate[m.pod.uid] = m.pod.gate
    return last


def down(moment: Moment, names: set[str]) -> set[str]:
    """Pods of `names` not up (absent, not running, a container not ready, or deleting)."""
    return {n for n in names if n not in moment.pods or not moment.pods[n].up}


class Writer:
    """aerospike_load.py writing continuously (rate-limited) until stopped."""

    def __init__(self, live: Live, name: str, first: int, rate: int = 300):
        self.acked = live.workdir / f"{name}.acked"
        self._stop = live.workdir / f"{name}.stop"
        live.acked.append(self.acked)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", live.client_netns, sys.executable, str(LOAD), "write",
             "--hosts", live.hosts(), "--acked", str(self.acked), "--stop", str(self._stop),
             "--first", str(first), "--rate", str(rate), "--size", "1024"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.summary: dict[str, Any] | None = None

    def count(self) -> int:
        if self.summary is None and self.proc.poll() is not None:
            raise AssertionError(f"the writer exited: {self.proc.communicate()[1][-2000:]}")
        try:
            return sum(1 for _ in self.acked.open())
        except FileNotFoundError:
            return 0

    def wait_acks(self, n: int) -> int:
        return int(wait_for(f"{n} acknowledged writes",
                            lambda: (c := self.count()) >= n and c, timeout=WAIT))

    def stop(self) -> dict[str, Any]:
        if self.summary is None:
            self._stop.touch()
            out, err = self.proc.communicate(timeout=120)
            assert self.proc.returncode == 0, f"writer failed: {err[-2000:]}"
            self.summary = json.loads(out.strip().splitlines()[-1])
        return self.summary

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class MigrationWatch:
    """aerospike_load.py migrations: Aerospike's own count of partitions still to migrate,
    on every node, once a second (figures only: when migrations really ended)."""

    def __init__(self, live: Live, name: str):
        self._stop = live.workdir / f"{name}.migrations.stop"
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", live.client_netns, sys.executable, str(LOAD), "migrations",
             "--hosts", live.hosts(), "--stop", str(self._stop)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> list[dict[str, Any]]:
        self._stop.touch()
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        samples = []
        for line in out.splitlines():
            sample = json.loads(line)
            if "remaining" in sample:
                samples.append(sample)
        return samples


def migrations_done(samples: list[dict[str, Any]], nodes: int, after: float,
                    before: float = float("inf")) -> float | None:
    """The end of the last migration between `after` and `before` (unix times): the first
    round after the last one with partitions remaining where `nodes` nodes answered 0."""
    window = [s for s in samples if after <= s["t"] <= before]
    busy = [i for i, s in enumerate(window) if any(v > 0 for v in s["remaining"].values())]
    if not busy:
        return None
    for s in window[busy[-1] + 1:]:
        if len(s["remaining"]) == nodes and all(v == 0 for v in s["remaining"].values()):
            return float(s["t"])
    return None


def since(t: float | None, start: float) -> str:
    return "never seen" if t is None else f"{t - start:.1f} s"


# -- the scenarios ---------------------------------------------------------------------------


def test_scale_down_under_write_load_loses_no_acknowledged_record(live: Live) -> None:
    live.settle(3)
    names = {p["metadata"]["name"] for p in live.pods()}
    timeline = PodTimeline(live)
    writer = Writer(live, "scaledown", first=1_000_000)
    migrations = MigrationWatch(live, "scaledown")
    samples: list[dict[str, Any]] = []
    try:
        writer.wait_acks(300)
        before = writer.count()
        requested, requested_wall = time.monotonic(), time.time()
        live.kubectl.run("patch", "cc", CC, "-n", live.ns, "--type=merge",
                         "-p", json.dumps({"spec": {"size": 2}}))
        live.settle(2)
        took = time.monotonic() - requested
        at_ready = writer.count()
        writer.wait_acks(at_ready + 300)  # the load went on through the scale-down and after
        summary = writer.stop()
    finally:
        writer.kill()
        moments = timeline.stop()
        samples = migrations.stop()
    result = live.check_all()
    left = sorted(names - {p["metadata"]["name"] for p in live.pods()})
    figure("scale 3 -> 2 under load: writer", summary)
    figure("scale 3 -> 2: acknowledged before the scale request / by Ready at 2",
           f"{before} / {at_ready} (Ready at 2 after {took:.1f} s)")
    figure("scale 3 -> 2: every acknowledged key so far, read back", result)
    assert left == [f"{CC}-2"], left
    assert summary["acked"] > before > 0 and at_ready > before
    assert result["missing"] == 0 and result["found"] == result["listed"], result
    # the gate closed while the cluster changed (MigrationsRunning when the operator's poll
    # caught the migration, else ClusterNotStable: a node gone, the size not yet agreed)
    gates = sorted({f"{m.pod.gate}/{m.pod.gate_reason}" for m in moments})
    figure("scale 3 -> 2: readiness gate values seen", gates)
    most = max((sum(s["remaining"].values()) for s in samples if s["t"] >= requested_wall),
               default=None)
    figure("scale 3 -> 2: after the request, Aerospike's migrations (most partitions "
           f"remaining {most}) ended at / the last gate turned True at",
           f"{since(migrations_done(samples, 2, requested_wall), requested_wall)} / "
           f"{since(opened_at(moments), requested)}")
    assert any(g.startswith("False/") for g in gates), gates


def test_drain_during_migrations_is_held_by_the_readiness_gate(live: Live) -> None:
    live.settle(2)
    timeline = PodTimeline(live)
    writer = Writer(live, "drain", first=2_000_000)
    migrations = MigrationWatch(live, "drain")
    samples: list[dict[str, Any]] = []
    node = ""
    try:
        writer.wait_acks(300)
        live.kubectl.run("patch", "cc", CC, "-n", live.ns, "--type=merge",
                         "-p", json.dumps({"spec": {"size": 3}}))

        # The AKO #489 situation: every container ready, data migrating to the joiner.
        def migrating() -> list[dict[str, Any]] | None:
            pods = live.pods()
            ok = len(pods) == 3 and all(
                pod_state(p).up and condition(p, GATE).get("reason") == "MigrationsRunning"
                for p in pods)
            return pods if ok else None

        pods = wait_for("3 pods with ready containers while data migrates", migrating,
                        timeout=WAIT, interval=0.2)
        migrating_partitions = live.cc()["status"].get("migratingPartitions")
        victim = next(p for p in pods if p["metadata"]["name"] == f"{CC}-1")
        node, victim_uid = victim["spec"]["nodeName"], victim["metadata"]["uid"]
        started, started_wall = time.monotonic(), time.time()
        drain = live.kubectl.run("drain", node, "--ignore-daemonsets", "--delete-emptydir-data",
                                 "--force", f"--timeout={int(WAIT)}s", check=False,
                                 timeout=WAIT + 60)
        finished = time.monotonic()
        assert drain.returncode == 0, drain.stderr[-3000:]

        # the cluster is stable again on the two pods left (the victim is Pending: the node
        # is cordoned and pods keep one per node), then every acknowledged key is there
        def stable_on_two() -> bool:
            pods = [p for p in live.pods() if p["status"].get("podIP")
                    and not p["metadata"].get("deletionTimestamp")]
            return len(pods) == 2 and all(condition(p, GATE).get("status") == "True"
                                          for p in pods)

        wait_for("a stable cluster on the 2 pods left", stable_on_two, timeout=WAIT)
        writer.wait_acks(writer.count() + 300)
        summary = writer.stop()
        result = live.check_all()
    finally:
        writer.kill()
        moments = timeline.stop()
        samples = migrations.stop()
        if node:
            live.kubectl.run("uncordon", node)
    output = drain.stdout + drain.stderr
    refusals = output.count(REFUSED)
    evicted = next((m for m in moments if m.pod.uid == victim_uid and m.pod.deleting), None)
    assert evicted is not None, "the drained pod was never deleted"
    i = moments.index(evicted)
    before = moments[i - 1].pods
    gate_opened = opened_at(moments[:i])
    figure("drain: partitions migrating when it began", migrating_partitions)
    figure("drain: refused evictions (kubectl drain retries every 5 s)", refusals)
    figure("drain: held for", f"{evicted.at - started:.1f} s (kubectl drain returned after "
           f"{finished - started:.1f} s); the eviction went through "
           f"{evicted.at - gate_opened:.1f} s after the last gate turned True")
    figure("drain: after it began, Aerospike's migrations (3 nodes) ended at / the last gate "
           "turned True at / the eviction went through at",
           f"{since(migrations_done(samples, 3, started_wall, evicted.wall), started_wall)} / "
           f"{since(gate_opened, started)} / {since(evicted.at, started)}")
    figure("drain: writer", summary)
    figure("drain: every acknowledged key so far, read back", result)
    assert refusals >= 1, f"the drain was not held:\n{output}"
    # the eviction went through only once the gate was True on every pod (watch order)
    assert all(s.gate == "True" for s in before.values()), before
    assert result["missing"] == 0 and result["found"] == result["listed"], result
    live.settle(3)


def test_static_config_change_restarts_one_pod_at_a_time(live: Live) -> None:
    live.settle(3)
    old = {p["metadata"]["name"]: p["metadata"]["uid"] for p in live.pods()}
    names = set(old)
    timeline = PodTimeline(live)
    writer = Writer(live, "roll", first=3_000_000)
    try:
        writer.wait_acks(300)
        patch = {"spec": {"aerospikeConfig": {"network": {"fabric": {"send-threads": 4}}}}}
        changed = time.monotonic()
        live.kubectl.run("patch", "cc", CC, "-n", live.ns, "--type=merge",
                         "-p", json.dumps(patch))

        def rolled() -> bool:
            pods = live.pods()
            return ({p["metadata"]["name"] for p in pods} == names
                    and all(p["metadata"]["uid"] != old[p["metadata"]["name"]] for p in pods))

        wait_for("every pod restarted", rolled, timeout=WAIT * 4, interval=1)
        live.settle(3)
        summary = writer.stop()
    finally:
        writer.kill()
        moments = timeline.stop()
    result = live.check_all()
    config_now = live.load("info", "--hosts", live.hosts(), "--command",
                           "get-config:context=network")
    # a restart begins when the pod's old incarnation is marked for deletion
    restarts: list[int] = []
    for i, m in enumerate(moments):
        if (m.pod.deleting and m.pod.uid == old.get(m.pod.name)
                and m.pod.name not in [moments[j].pod.name for j in restarts]):
            restarts.append(i)
    order = [moments[i].pod.name for i in restarts]
    gaps = [f"{moments[b].at - moments[a].at:.1f}" for a, b in itertools.pairwise(restarts)]
    # from the first moment the watch has listed every pod
    listed = next(i for i, m in enumerate(moments) if names <= set(m.pods))
    most_down = max(len(down(m, names)) for m in moments[listed:])
    figure("roll: restart order", " -> ".join(order) + f" (s between restarts: {gaps}; "
           f"config change to the last pod's restart: {moments[restarts[-1]].at - changed:.1f} s)")
    figure("roll: most pods down at once", most_down)
    figure("roll: writer", summary)
    figure("roll: every acknowledged key so far, read back", result)
    assert sorted(order) == sorted(names) and len(order) == len(names), order
    assert most_down == 1, describe(moments)
    # each restart began from a stable cluster: every pod up, every gate True
    for i in restarts:
        before = moments[i - 1]
        assert not down(before, names), (moments[i].pod.name, before.pods)
        assert all(s.gate == "True" for s in before.pods.values()), \
            (moments[i].pod.name, before.pods)
    for node_id, reply in config_now.items():
        assert reply is not None and "fabric.send-threads=4" in reply.split(";"), \
            (node_id, reply)
    assert result["missing"] == 0 and result["found"] == result["listed"], result


def test_edges_use_the_cachecluster_as_l2(live: Live) -> None:
    live.settle(3)
    k, ns = live.kubectl, live.ns
    files = " && ".join(f"echo object-{i} > /tmp/www/o{i}.txt" for i in range(20))
    labels = {"app": "origin"}
    k.apply(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "origin", "labels": labels},
         "spec": {**real_node_placement(), "containers": [
             {"name": "origin", "image": "aerocdn:0.1.0", "imagePullPolicy": "Never",
              "args": ["sh", "-c", f"mkdir -p /tmp/www && {files} && exec python3 -m "
                       "http.server 8000 --bind 0.0.0.0 --directory /tmp/www"],
              "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "origin"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8000}]}},
        {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
         "metadata": {"name": "site"},
         "spec": {"hosts": ["site.example.com"], "origin": {"url": "http://origin"},
                  "imagePullPolicy": "Never", "placement": real_node_placement(),
                  "routing": {"slowStartSeconds": 0},
                  "regions": [{"name": "eu-west", "cacheCluster": CC, "replicas": 2}]}},
        namespace=ns)
    try:
        def edges() -> list[dict[str, Any]] | None:
            pods = [p for p in k.items("pod", ns, "aerocdn.dev/contentedge=site")
                    if not p["metadata"].get("deletionTimestamp")]
            ok = len(pods) == 2 and all(condition(p, "Ready").get("status") == "True"
                                        for p in pods)
            return pods if ok else None

        a, b = wait_for("2 edge pods Ready", edges, timeout=WAIT)

        def get(pod: dict[str, Any], path: str) -> str:
            out = subprocess.run(
                ["ip", "netns", "exec", live.client_netns, "curl", "-s", "-m", "10",
                 "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: site.example.com",
                 f"http://{pod['status']['podIP']}:8080{path}"],
                capture_output=True, text=True, timeout=30, check=False)
            return out.stdout

        def tier(pod: dict[str, Any], path: str) -> str | None:
            log = k.run("logs", "-n", ns, pod["metadata"]["name"], "-c", "nginx").stdout
            for line in reversed(log.splitlines()):
                if path in line and line.startswith("{"):
                    return str(json.loads(line).get("tier"))
            return None

        # an object fetched through one edge is then found by the other in Aerospike
        tiers = []
        for i in range(20):
            path = f"/o{i}.txt"
            assert get(a, path) == "200"
            time.sleep(0.5)  # the L2 store follows the answer
            assert get(b, path) == "200"
            tiers.append((tier(a, path), tier(b, path)))
            if tiers[-1][1] == "l2":
                break
        figure("edges: tier answering (first edge, second edge) per object", tiers)
        assert tiers[-1] == ("origin", "l2"), tiers
        sets = live.load("info", "--hosts", live.hosts(), "--command", "sets/cache/site")
        assert any(r and "objects=" in r for r in sets.values()), sets
    finally:
        k.run("delete", "contentedge", "site", "-n", ns, "--wait=false", check=False)
        k.run("delete", "pod,service", "origin", "-n", ns, "--wait=false", check=False)
