"""Real node of the local cluster: start-to-Ready, pod create-to-Ready, memory.

    .venv/bin/python bench/controlplane/realnode.py --runs 3 [--image archive.tar]

Per run: a LocalCluster with one kwok node and one real node; the time from the kubelet's
start to the node Ready (the images are imported before the kubelet starts), the whole start,
then a pause pod and (with --image) a pod of the aerocdn image with a readiness probe, each
created on the real node and timed until Ready (apiserver conditions, polled every 50 ms).
RSS of kubelet, containerd, kube-proxy and CoreDNS from /proc.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from aerocdn_localcluster import LocalCluster, NodeSpec, build_binaries, nodeplan


def pod(name: str, image: str, args: list[str] | None, probe: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": image, "imagePullPolicy": "Never"}
    if args:
        container["args"] = args
    if probe:
        container["readinessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeSelector": {nodeplan.NODE_KIND_LABEL: nodeplan.REAL},
                     "tolerations": [{**nodeplan.REAL_NODE_TAINT, "operator": "Equal"}],
                     "terminationGracePeriodSeconds": 1, "containers": [container]}}


def time_to_ready(core: client.CoreV1Api, body: dict[str, Any]) -> float:
    begun = time.monotonic()
    core.create_namespaced_pod("default", body)
    while time.monotonic() - begun < 120:
        p = core.read_namespaced_pod(body["metadata"]["name"], "default").to_dict()
        if any(c["type"] == "Ready" and c["status"] == "True"
               for c in p["status"].get("conditions") or []):
            return time.monotonic() - begun
        time.sleep(0.05)
    raise TimeoutError(body["metadata"]["name"])


def rss_mib(names: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm in names:
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[comm] = out.get(comm, 0) + int(line.split()[1]) / 1024
        except OSError:
            continue
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--image", type=Path, help="aerocdn docker-archive to import and time")
    args = ap.parse_args()
    bin_dir = build_binaries()
    results = []
    for run in range(args.runs):
        images = (args.image,) if args.image else ()
        with LocalCluster(bin_dir=bin_dir, real_nodes=1, images=images,
                          nodes=(NodeSpec("kwok-0", "eu-west", "eu-west-a"),)) as c:
            m = c.milestones
            r: dict[str, Any] = {
                "start_s": round(c.started_seconds or 0, 1),
                "kubelet_to_node_ready_s": round(m["real-nodes"] - m["real-0-images"], 2),
                "containerd_and_images_s": round(m["real-0-images"] - m["serviceaccount"], 2),
            }
            api = config.new_client_from_config(config_file=str(c.kubeconfig))
            core = client.CoreV1Api(api)
            try:
                r["pause_pod_ready_s"] = round(time_to_ready(
                    core, pod(f"pause-{run}", nodeplan.PAUSE_IMAGE, None, False)), 2)
                if args.image:
                    r["aerocdn_pod_ready_s"] = round(time_to_ready(
                        core, pod(f"aerocdn-{run}", "aerocdn:0.1.0", ["sleep", "infinity"],
                                  True)), 2)
            finally:
                api.close()
            r["rss_mib"] = {k: round(v) for k, v in rss_mib(
                ("kubelet", "containerd", "kube-proxy", "coredns")).items()}
        print(json.dumps(r), flush=True)
        results.append(r)
    for key in ("start_s", "kubelet_to_node_ready_s", "pause_pod_ready_s", "aerocdn_pod_ready_s"):
        values = [r[key] for r in results if key in r]
        if values:
            print(f"{key}: median {statistics.median(values)} of {values}")


if __name__ == "__main__":
    main()
