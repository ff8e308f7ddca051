"""ContentPurge against a real apiserver and the operator as its ServiceAccount: the spec is
immutable, the aerocdn-purger role may purge without editing ContentEdges, and what the
ContentEdge cannot carry out is said in the status before any pod is called.

(The pods here are kwok's: nothing answers at their addresses, so no scenario below reaches
the point of calling them; tests/e2e/test_purge.py runs real edge pods.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.operator_harness import (
    Kubectl,
    Operator,
    condition,
    small_cc,
    small_ce,
    wait_for,
)


def content_purge(name: str, edge: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentPurge",
            "metadata": {"name": name},
            "spec": {"contentEdgeRef": {"name": edge}, **spec}}


def test_the_spec_of_a_purge_cannot_change(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(content_purge("p1", "site", urls=["www.example.com/a"]), namespace=ns)
    result = kubectl.run("patch", "contentpurge", "p1", "-n", ns, "--type=merge", "-p",
                         json.dumps({"spec": {"urls": ["www.example.com/b"]}}), check=False)
    assert result.returncode != 0
    assert "spec is immutable" in result.stderr


def test_the_purger_role_may_purge_but_not_edit_the_contentedge(kubectl: Kubectl,
                                                                ns: str) -> None:
    kubectl.run("create", "serviceaccount", "cdn-team", "-n", ns)
    kubectl.run("create", "rolebinding", "purgers", "-n", ns, "--clusterrole=aerocdn-purger",
                f"--serviceaccount={ns}:cdn-team")
    who = f"system:serviceaccount:{ns}:cdn-team"

    def can(verb: str, resource: str) -> bool:
        r = kubectl.run("auth", "can-i", verb, resource, "-n", ns, f"--as={who}", check=False)
        return r.stdout.strip() == "yes"

    assert can("create", "contentpurges.aerocdn.dev")
    assert can("get", "contentpurges.aerocdn.dev")
    assert can("get", "contentedges.aerocdn.dev")
    for verb in ("create", "patch", "update", "delete"):
        assert not can(verb, "contentedges.aerocdn.dev"), verb
    assert not can("patch", "contentpurges.aerocdn.dev/status")
    # only in the namespace of the binding
    other = kubectl.run("auth", "can-i", "create", "contentpurges.aerocdn.dev", "-n",
                        "default", f"--as={who}", check=False)
    assert other.stdout.strip() == "no"
    # and for real: the team creates one
    kubectl.run("apply", "-n", ns, f"--as={who}", "-f", "-",
                input=json.dumps(content_purge("by-team", "site", urls=["www.example.com/"])))
    assert kubectl.get("contentpurge", "by-team", ns) is not None


def test_what_the_contentedge_cannot_carry_out_is_in_the_status(
        kubectl: Kubectl, operator: Operator, ns: str) -> None:
    # no ContentEdge (yet): Pending, and said so
    kubectl.apply(content_purge("early", "site", urls=["site.example.com/a"]), namespace=ns)
    early = wait_for("ContentEdgeNotFound", lambda: (p := kubectl.get("contentpurge", "early",
                                                                     ns))
                     and condition(p, "Complete").get("reason") == "ContentEdgeNotFound" and p)
    assert early["status"]["phase"] == "Pending"
    assert f"ContentEdge {ns}/site does not exist" in condition(early, "Complete")["message"]

    # a ContentEdge without a purge token: its edges accept no purge
    kubectl.apply(small_cc("eu-west", "eu-west", size=1), namespace=ns)
    kubectl.apply(small_ce("site", [{"name": "eu-west", "replicas": 0}]), namespace=ns)
    no_token = wait_for("NoPurgeToken", lambda: (p := kubectl.get("contentpurge", "early", ns))
                        and condition(p, "Complete").get("reason") == "NoPurgeToken" and p)
    assert "purgeTokenSecretRef" in condition(no_token, "Complete")["message"]

    # a host the ContentEdge does not serve: Failed, naming the field, never retried
    ce = kubectl.get("contentedge", "site", ns)
    assert ce is not None
    hosts = ce["spec"]["hosts"]
    kubectl.apply(content_purge("elsewhere", "site", urls=[f"{hosts[0]}/a"],
                                prefixes=["other.example.org/img/"]), namespace=ns)
    failed = wait_for("Failed", lambda: (p := kubectl.get("contentpurge", "elsewhere", ns))
                      and (p.get("status") or {}).get("phase") == "Failed" and p)
    cond = condition(failed, "Complete")
    assert cond["status"] == "False" and cond["reason"] == "InvalidSpec"
    assert cond["message"].startswith("spec.prefixes[0]: host 'other.example.org' is not "
                                      "served by ContentEdge site")
    events = kubectl.items("events", ns)
    assert any(e["involvedObject"]["name"] == "elsewhere" and e["type"] == "Warning"
               and e["reason"] == "InvalidSpec" for e in events)


def test_the_cli_refuses_what_cannot_be_purged_and_waits_with_a_deadline(
        kubectl: Kubectl, operator: Operator, ns: str, tmp_path: Path) -> None:
    def purge(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "aerocdn.cli", "purge", *argv,
                               "-n", ns, "--kubeconfig", kubectl.kubeconfig],
                              capture_output=True, text=True, timeout=300)

    missing = purge("site", "--name", "p1", "--url", "site.example.com/a")
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"error: ContentPurge/p1: spec.contentEdgeRef.name (CONTENTEDGE): ContentEdge "
        f"{ns}/site does not exist", "error: nothing was created"]

    kubectl.run("create", "secret", "generic", "purge", "-n", ns, "--from-literal=token=t")
    kubectl.apply(small_ce("site", [{"name": "eu-west", "replicas": 0}],
                           purgeTokenSecretRef={"name": "purge"}), namespace=ns)
    elsewhere = purge("site", "--name", "p2", "--prefix", "other.example.org/")
    assert elsewhere.returncode == 2
    assert elsewhere.stderr.startswith("error: ContentPurge/p2: spec.prefixes[0] (--prefix): "
                                       "host 'other.example.org' is not served by ContentEdge "
                                       "site")
    assert kubectl.items("contentpurge", ns) == []  # nothing was created

    # no edge pods (replicas 0): never complete; the deadline ends the wait, exit 1
    waited = purge("site", "--name", "p3", "--url", "site.example.com/a", "--timeout", "5")
    assert waited.returncode == 1, waited.stderr
    assert f"ContentPurge {ns}/p3 created" in waited.stdout
    assert f"error: ContentPurge {ns}/p3 not complete after 5 s (--timeout)" in waited.stderr
    assert kubectl.get("contentpurge", "p3", ns) is not None  # it goes on
