"""A ContentPurge carried out by the operator on real edge processes: 3 regions x 2 pods.

The ContentEdge's pods are kwok's (the local control plane's nodes run no processes), so each
pod gets a real stand-in process pair on 127.0.0.1 - `aerocdn edge` (as a subprocess, from the
region's edge.yaml the operator rendered into its ConfigMap, with ports and paths made local
and the in-process memory tier as L2: no Aerospike here) and nginx with the rendered
nginx.conf - and the operator reaches each pod's admin port at its process through
``--edge-admin-address POD=127.0.0.1:PORT`` (as the live Aerospike tier does for Aerospike pods
with ``--aerospike-address``). What this proves: the operator finds the ContentEdge's pods
through the apiserver, reads the token from the Secret, calls each pod on its own, reports per
region and pod, retries a pod that was unreachable until it confirms, completes, and deletes
the purge after its TTL; and each pod's nginx then serves the new object. Not proved here:
the pod network (tests/e2e runs real edge pods, but without an Aerospike server their L2 purge
cannot succeed).
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.edge.edgeharness import (
    PURGE_MODULE,
    Nginx,
    age_module,
    edge_subprocess,
    free_port,
    have_nginx,
    nginx_missing,
    with_nginx,
    write_config_file,
)
from tests.integration.operator_harness import (
    Kubectl,
    Operator,
    condition,
    serviceaccount_kubeconfig,
    small_ce,
    wait_for,
)

from aerocdn.edge.config import EdgeConfig

pytestmark = pytest.mark.skipif(not have_nginx(), reason=nginx_missing() or "no nginx")

HOST = "site.example.com"
TOKEN = "purge-token-for-the-test"
REGIONS = ["eu-west", "us-east", "ap-south"]

# An origin that marks its answers cacheable for 5 minutes, tags scripts "scripts", and
# serves files of a directory.
ORIGIN = """
import functools, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Cache-Control", "max-age=300")
        if self.path.endswith(".js"):
            self.send_header("Surrogate-Key", "scripts release-41")
        super().end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])),
    functools.partial(H, directory=sys.argv[2])).serve_forever()
"""


@dataclass
class EdgeProcess:
    """One pod's processes: `aerocdn edge` and nginx in front of it."""

    pod: str
    cfg: EdgeConfig
    config_file: Path
    nginx: Nginx
    edge: subprocess.Popen[bytes] | None = None

    @property
    def admin(self) -> str:
        return self.cfg.admin_listen

    def start(self) -> None:
        self.edge = edge_subprocess(self.config_file)
        wait_for(f"{self.pod}'s edge", self._healthy, timeout=60, interval=0.1)
        if self.nginx.proc is None:
            self.nginx.start()

    def _healthy(self) -> bool:
        assert self.edge is not None
        if self.edge.poll() is not None:
            err = self.edge.stderr.read().decode() if self.edge.stderr else ""
            raise AssertionError(f"edge of {self.pod} exited: {err}")
        try:
            with urllib.request.urlopen(f"http://{self.admin}/healthz", timeout=2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.nginx.stop()
        if self.edge is not None and self.edge.poll() is None:
            self.edge.terminate()
            try:
                self.edge.wait(30)
            except subprocess.TimeoutExpired:
                self.edge.kill()
                self.edge.wait()

    def get(self, path: str) -> tuple[str, str]:
        """(body, X-Cache) of a client's GET through this pod's nginx."""
        req = urllib.request.Request(f"{self.nginx.url}{path}", headers={"Host": HOST})
        with urllib.request.urlopen(req, timeout=20) as r:
            assert r.headers.get("Surrogate-Key") is None  # the cache's, not the client's
            return r.read().decode(), r.headers.get("X-Cache", "")


def local_config(rendered: dict[str, Any], origin: str, work: Path) -> EdgeConfig:
    """The region's rendered edge.yaml with every port on 127.0.0.1, every path under
    ``work``, the test origin, and the memory tier (no Aerospike to reach)."""
    (work / "cache").mkdir(parents=True)
    (work / "token").write_text(TOKEN + "\n")
    cfg = EdgeConfig.model_validate({
        **rendered,
        "origin": {**rendered["origin"], "url": origin},
        "cacheClusters": {},
        "listen": f"127.0.0.1:{free_port()}",
        "adminListen": f"127.0.0.1:{free_port()}",
        "routingPlanPath": str(work / "routes.json"),
        "purgeTokenPath": str(work / "token"),
        "peers": {"static": []},
        "nginx": {**rendered.get("nginx", {}),
                  "listen": f"127.0.0.1:{free_port()}",
                  "controlListen": f"127.0.0.1:{free_port()}",
                  "cacheDir": str(work / "cache"), "tempDir": str(work),
                  "pidFile": str(work / "nginx.pid"),
                  "purgeModulePath": PURGE_MODULE,
                  "ageModulePath": age_module()[0] or "/nonexistent/age_module.so",
                  "accessLog": str(work / "access.log"), "errorLog": str(work / "error.log"),
                  "user": "root"},
        "memoryLimit": "256Mi",
    })
    return with_nginx(cfg)


def purger_kubeconfig(kubectl: Kubectl, ns: str, work: Path) -> Path:
    """A kubeconfig of ServiceAccount cdn-team, bound to the chart's aerocdn-purger role in
    ``ns`` (and nothing else), the namespace its context's."""
    kubectl.run("create", "serviceaccount", "cdn-team", "-n", ns)
    kubectl.run("create", "rolebinding", "purgers", "-n", ns, "--clusterrole=aerocdn-purger",
                f"--serviceaccount={ns}:cdn-team")
    token = kubectl.run("create", "token", "cdn-team", "-n", ns,
                        "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(kubectl.kubeconfig).read_text())
    path = work / "purger.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "team",
        "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "cdn-team", "user": {"token": token}}],
        "contexts": [{"name": "team", "context": {"cluster": "c", "user": "cdn-team",
                                                  "namespace": ns}}]}))
    return path


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    www = tmp_path / "www"
    (www / "img").mkdir(parents=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", ORIGIN, str(port), str(www)])

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
    try:
        wait_for("the origin", up, timeout=30, interval=0.1)
        yield f"http://127.0.0.1:{port}", www
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_purge_reaches_every_pod_of_three_regions_and_completes(
        kubectl: Kubectl, operator: Operator, origin: tuple[str, Path], tmp_path: Path) -> None:
    origin_url, www = origin
    (www / "a.css").write_text("v1")
    (www / "img" / "logo.png").write_text("logo v1")
    (www / "app.js").write_text("js v1")
    ns = f"purge-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", ns)
    processes: list[EdgeProcess] = []
    op: Operator | None = None
    cli: subprocess.Popen[str] | None = None
    try:
        kubectl.run("create", "secret", "generic", "purge", "-n", ns,
                    f"--from-literal=token={TOKEN}")
        kubectl.apply(small_ce("site", [{"name": r, "replicas": 2} for r in REGIONS],
                               hosts=[HOST], purgeTokenSecretRef={"name": "purge"},
                               placement={"regionAffinity": "Ignored"}), namespace=ns)

        def six_pods() -> list[dict[str, Any]] | None:
            pods = [p for p in kubectl.items("pod", ns, "aerocdn.dev/contentedge=site")
                    if (p.get("status") or {}).get("phase") == "Running"
                    and not p["metadata"].get("deletionTimestamp")]
            return pods if len(pods) == 6 else None
        pods = wait_for("6 edge pods running", six_pods)
        configs = {c["metadata"]["labels"]["aerocdn.dev/region"]:
                   yaml.safe_load(c["data"]["edge.yaml"])
                   for c in kubectl.items("configmap", ns, "aerocdn.dev/contentedge=site")
                   if "edge.yaml" in (c.get("data") or {})}
        assert sorted(configs) == sorted(REGIONS)
        for i, pod in enumerate(sorted(pods, key=lambda p: p["metadata"]["name"])):
            name = pod["metadata"]["name"]
            region = pod["metadata"]["labels"]["aerocdn.dev/region"]
            cfg = local_config(configs[region], origin_url, tmp_path / f"pod{i}")
            assert cfg.region == region and cfg.hosts == (HOST,)
            processes.append(EdgeProcess(name, cfg, write_config_file(
                cfg, tmp_path / f"pod{i}" / "edge.yaml"), Nginx(cfg, tmp_path / f"pod{i}")))
        late = processes[-1]  # down when the purge starts: the operator must retry it
        for p in processes[:-1]:
            p.start()
            assert p.get("/a.css") == ("v1", "MISS")
            assert p.get("/a.css") == ("v1", "HIT")
            assert p.get("/img/logo.png")[0] == "logo v1"
            assert p.get("/app.js")[0] == "js v1"

        # the origin changes; every pod's nginx still serves what it cached
        (www / "a.css").write_text("v2")
        (www / "img" / "logo.png").write_text("logo v2")
        (www / "app.js").write_text("js v2")
        assert {p.get("/a.css") for p in processes[:-1]} == {("v1", "HIT")}

        # the session's operator cannot reach these processes: one that can takes over
        operator.stop()
        sa = serviceaccount_kubeconfig(kubectl, tmp_path / "sa")
        op = Operator(sa, tmp_path / "operator.log", *(
            f"--edge-admin-address={p.pod}={p.admin}" for p in processes)).start()
        # `aerocdn purge`, as a member of a team allowed to purge (not to edit the
        # ContentEdge), creates the ContentPurge and waits for it
        cli = subprocess.Popen(
            [sys.executable, "-m", "aerocdn.cli", "purge", "site", "--name", "release-42",
             "--url", f"https://{HOST}/a.css", "--prefix", f"{HOST}/img/",
             "--tag", "scripts", "--ttl", "5",
             "--timeout", "600", "--kubeconfig", str(purger_kubeconfig(kubectl, ns, tmp_path))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def pod_state(obj: dict[str, Any], pod: str) -> dict[str, Any]:
            (found,) = [p for r in obj["status"]["regions"] for p in r["pods"]
                        if p["name"] == pod]
            return dict(found)

        partial = wait_for("5 pods confirmed, the sixth failing", lambda: (
            c := kubectl.get("contentpurge", "release-42", ns)) and (c.get("status") or {})
            .get("confirmed") == 5 and pod_state(c, late.pod)["state"] == "Error" and c)
        assert partial["status"]["phase"] == "InProgress"
        assert partial["status"]["pods"] == 6
        assert pod_state(partial, late.pod)["message"].startswith("unreachable: ")
        assert condition(partial, "Complete")["status"] == "False"
        assert late.pod in condition(partial, "Complete")["message"]
        # the confirmed pods already serve the new objects
        for p in processes[:-1]:
            assert p.get("/a.css")[0] == "v2"
            assert p.get("/img/logo.png")[0] == "logo v2"
            assert p.get("/app.js")[0] == "js v2"

        assert cli.poll() is None  # still waiting
        late.start()  # the pod comes back: retried with backoff until it confirms
        done = wait_for("Complete", lambda: (c := kubectl.get("contentpurge", "release-42",
                                                               ns))
                        and condition(c, "Complete").get("status") == "True" and c)
        status = done["status"]
        assert (status["phase"], status["pods"], status["confirmed"], status["failed"]) == (
            "Complete", 6, 6, 0)
        assert sorted((r["name"], r["confirmed"], len(r["pods"]))
                      for r in status["regions"]) == sorted((r, 2, 2) for r in REGIONS)
        assert pod_state(done, late.pod)["attempts"] >= 2
        assert all(p["message"].startswith("3 targets purged in L1 and L2")
                   for r in status["regions"] for p in r["pods"])
        assert late.get("/a.css")[0] == "v2"
        stdout, stderr = cli.communicate(timeout=120)
        assert cli.returncode == 0, (stdout, stderr)
        assert f"ContentPurge {ns}/release-42 complete: 6 edge pods in 3 regions " \
            "confirmed" in stdout
        assert f"{late.pod}: Error: unreachable: " in stdout  # it said what it waited for
        events = [(e["type"], e["reason"]) for e in kubectl.items("events", ns)
                  if e["involvedObject"]["name"] == "release-42"]
        assert ("Warning", "PodNotConfirmed") in events and ("Normal", "Complete") in events

        # finished: deleted after ttlSecondsAfterFinished
        wait_for("the finished purge deleted after its TTL",
                 lambda: kubectl.get("contentpurge", "release-42", ns) is None, timeout=120)
        assert TOKEN not in op.log()
        assert "Traceback" not in op.log()
    finally:
        if cli is not None and cli.poll() is None:
            cli.kill()
            cli.communicate()
        if op is not None:
            op.stop()
        for p in processes:
            p.stop()
        kubectl.run("delete", "namespace", ns, "--wait=false", check=False)
        if op is not None:
            operator.start()
