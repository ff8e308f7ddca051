"""Running the aerocdn operator against a real API server, as the ServiceAccount of
manifests/base (so a verb missing from its ClusterRole fails the tests), and kubectl helpers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, watch

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "manifests" / "examples"
WAIT = float(os.environ.get("AEROCDN_TEST_WAIT", "90"))


class Kubectl:
    def __init__(self, kubeconfig: str):
        self.kubeconfig = kubeconfig

    def run(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args],
                                input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def apply(self, *objects: dict[str, Any], namespace: str | None = None) -> None:
        ns = ["-n", namespace] if namespace else []
        self.run("apply", *ns, "-f", "-", input=yaml.safe_dump_all(objects))

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        result = self.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        obj: dict[str, Any] = json.loads(result.stdout)
        return obj

    def items(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        sel = ["-l", selector] if selector else []
        out = json.loads(self.run("get", kind, "-n", namespace, *sel, "-o", "json").stdout)
        items: list[dict[str, Any]] = out["items"]
        return items

    def patch(self, kind: str, name: str, namespace: str, patch: dict[str, Any]) -> None:
        self.run("patch", kind, name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT,
             interval: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions", []):
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def is_ready(obj: dict[str, Any] | None) -> bool:
    if not obj:
        return False
    status = obj.get("status") or {}
    return (condition(obj, "Ready").get("status") == "True"
            and status.get("observedGeneration") == obj["metadata"]["generation"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def install(kubectl: Kubectl) -> None:
    """CRDs, the operator's namespace, ServiceAccount and least-privilege ClusterRole."""
    kubectl.run("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "crds"))
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s",
                "crd/cacheclusters.aerocdn.dev", "crd/contentedges.aerocdn.dev",
                "crd/contentpurges.aerocdn.dev")
    for name in ("namespace.yaml", "rbac.yaml"):
        kubectl.run("apply", "-f", str(REPO / "manifests" / "base" / name))


def serviceaccount_kubeconfig(kubectl: Kubectl, path: Path) -> Path:
    """A kubeconfig that authenticates as system:serviceaccount:aerocdn-system:aerocdn."""
    token = kubectl.run("create", "token", "aerocdn", "-n", "aerocdn-system",
                        "--duration=6h").stdout.strip()
    admin = yaml.safe_load(Path(kubectl.kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "aerocdn",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "aerocdn", "user": {"token": token}}],
        "contexts": [{"name": "aerocdn", "context": {"cluster": "c", "user": "aerocdn"}}],
    }))
    return path


class Operator:
    """`aerocdn run` as a child process; stopped (or killed) by the test that started it."""

    def __init__(self, kubeconfig: Path, log: Path, *args: str):
        self.kubeconfig = kubeconfig
        self.log_path = log
        self.args = args
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp: str | None = None

    def start(self) -> Operator:
        self.port = free_port()
        # the operator's own temp files (the kubernetes client writes the kubeconfig's CA
        # there, removed at exit - never after a SIGKILL) go where stop() and kill() clean up
        self._tmp = tempfile.mkdtemp(prefix="aerocdn-operator-tmp-")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "TMPDIR": self._tmp}
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aerocdn.cli", "run", "--aerospike-probe=kubernetes",
             "--metrics-port", str(self.port), "--resync-seconds", "3", *self.args],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for("the operator's /healthz", self._healthy, timeout=60)
        except BaseException:
            self.stop()  # a fixture that fails here never calls stop(): no orphan operator
            raise
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                return True
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("aerocdn_") and " " in line:
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def writes(self) -> float:
        return sum(v for k, v in self.metrics().items()
                   if k.startswith("aerocdn_api_writes_total"))

    def failed_reconciles(self) -> float:
        return sum(v for k, v in self.metrics().items()
                   if k.startswith("aerocdn_reconciles_total") and 'result="error"' in k)

    def reconciles(self) -> float:
        return sum(v for k, v in self.metrics().items()
                   if k.startswith("aerocdn_reconciles_total"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash or an OOM kill."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._remove_tmp()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        if getattr(self, "_log", None):
            self._log.close()
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def small_cc(name: str, region: str, size: int = 2) -> dict[str, Any]:
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
            "metadata": {"name": name},
            "spec": {"region": region, "size": size,
                     "namespaces": [{"name": "cache", "storage": {"size": "512Mi"}}]}}


def small_ce(name: str, regions: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
            "metadata": {"name": name},
            "spec": {"hosts": [f"{name}.example.com"], "origin": {"url": "http://origin.test"},
                     "regions": regions, "routing": {"slowStartSeconds": 0}, **spec}}


class Recorder:
    """Every version of the objects of one kind in a namespace, with resourceVersions (one
    etcd orders them: a smaller resourceVersion was written first)."""

    def __init__(self, api: client.ApiClient, namespace: str, kind: str):
        self.seen: list[tuple[int, dict[str, Any]]] = []
        self._stopped = False
        self._watch = watch.Watch()
        custom = client.CustomObjectsApi(api)
        lister, args = {
            "configmap": (client.CoreV1Api(api).list_namespaced_config_map, (namespace,)),
            "statefulset": (client.AppsV1Api(api).list_namespaced_stateful_set, (namespace,)),
            "cachecluster": (custom.list_namespaced_custom_object,
                             ("aerocdn.dev", "v1alpha1", namespace, "cacheclusters")),
        }[kind]
        self._thread = threading.Thread(target=self._run, args=(lister, args), daemon=True)
        self._thread.start()

    def _run(self, lister: Any, args: tuple[str, ...]) -> None:
        try:
            for event in self._watch.stream(lister, *args, timeout_seconds=300,
                                            _request_timeout=310):
                obj = client.ApiClient().sanitize_for_serialization(event["object"])
                self.seen.append((int(obj["metadata"]["resourceVersion"]), obj))
        except Exception:
            if not self._stopped:  # a stream closed by stop() is no error
                raise

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()


@contextlib.contextmanager
def cluster_for_bench() -> Iterator[str]:
    """The kubeconfig of $KUBECONFIG's cluster, or of a local control plane started for the
    caller and stopped when it is done (the benchmarks' way to get a cluster)."""
    given = os.environ.get("KUBECONFIG")
    if given:
        yield given
        return
    from aerocdn_localcluster import LocalCluster

    local = LocalCluster()
    local.start()
    try:
        yield str(local.kubeconfig)
    finally:
        local.stop()
