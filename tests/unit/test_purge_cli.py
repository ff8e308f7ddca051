"""`aerocdn purge`: arguments -> the ContentPurge, bad input named by field and option
(nothing created), and the verdict and report from a status."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from aerocdn import purgecli
from aerocdn.api.objects import InputError
from aerocdn.cli import parser


def args(*argv: str) -> Any:
    return parser().parse_args(["purge", *argv])


def test_arguments_make_the_contentpurge() -> None:
    obj = purgecli.build(args("shop", "--url", "https://shop.example.com/a.css", "--url",
                              "shop.example.com/b", "--prefix", "shop.example.com/img/",
                              "--name", "release-42", "--ttl", "600"), "team")
    assert obj == {
        "apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentPurge",
        "metadata": {"name": "release-42", "namespace": "team"},
        "spec": {"contentEdgeRef": {"name": "shop"},
                 "urls": ["https://shop.example.com/a.css", "shop.example.com/b"],
                 "prefixes": ["shop.example.com/img/"], "ttlSecondsAfterFinished": 600}}
    soft = purgecli.build(args("shop", "--tag", "p-1", "--soft", "--name", "s"), "t")
    assert soft["spec"] == {"contentEdgeRef": {"name": "shop"}, "tags": ["p-1"], "soft": True,
                            "ttlSecondsAfterFinished": 3600}
    kept = purgecli.build(args("shop", "--prefix", "shop.example.com/", "--ttl", "-1"), "t")
    assert "ttlSecondsAfterFinished" not in kept["spec"]
    assert kept["metadata"]["name"].startswith("shop-")
    assert purgecli.build(args("shop", "--url", "shop.example.com/x"), "t")["spec"][
        "ttlSecondsAfterFinished"] == 3600


def test_default_names_fit_the_object_name_limit() -> None:
    assert purgecli.default_name("shop", "abc123") == "shop-abc123"
    long = purgecli.default_name("a" * 30 + "-" + "b" * 9, "abc123")
    assert len(long) == 40 and long.endswith("-abc123") and "--" not in long


def problems(*argv: str) -> list[str]:
    with pytest.raises(InputError) as exc:
        purgecli.build(args(*argv), "team")
    return [str(p) for p in exc.value.problems]


def test_bad_input_names_the_object_the_field_and_the_option() -> None:
    assert problems("shop", "--name", "p1") == [
        "ContentPurge/p1: spec (--url/--prefix/--tag): name at least one target in urls, "
        "prefixes or tags"]
    (bad,) = problems("shop", "--name", "p1", "--url", "shop.example.com/ok",
                      "--url", "shop.example.com/*")
    assert bad.startswith("ContentPurge/p1: spec.urls[1] (--url): String should match")
    (dots,) = problems("shop", "--name", "p1", "--prefix", "shop.example.com/a/../b")
    assert dots.startswith("ContentPurge/p1: spec.prefixes[0] (--prefix): ")
    assert "'.' or '..'" in dots
    (name,) = problems("shop", "--name", "Bad_Name", "--url", "shop.example.com/")
    assert name.startswith("ContentPurge/Bad_Name: metadata.name (--name): ")
    (ce,) = problems("Shop!", "--name", "p1", "--url", "shop.example.com/")
    assert ce.startswith("ContentPurge/p1: spec.contentEdgeRef.name (CONTENTEDGE): ")
    (ttl,) = problems("shop", "--name", "p1", "--url", "shop.example.com/", "--ttl",
                      "99999999")
    assert ttl.startswith("ContentPurge/p1: spec.ttlSecondsAfterFinished (--ttl): ")


def test_hosts_are_checked_against_the_contentedge_before_creating() -> None:
    obj = purgecli.build(args("shop", "--name", "p1", "--url", "shop.example.com/a",
                              "--prefix", "other.example.org/"), "team")
    with pytest.raises(InputError) as missing:
        purgecli.check_hosts(obj, None)
    assert str(missing.value) == ("ContentPurge/p1: spec.contentEdgeRef.name (CONTENTEDGE): "
                                  "ContentEdge team/shop does not exist")
    with pytest.raises(InputError) as host:
        purgecli.check_hosts(obj, {"spec": {"hosts": ["shop.example.com"]}})
    assert str(host.value).startswith(
        "ContentPurge/p1: spec.prefixes[0] (--prefix): host 'other.example.org' is not served")
    purgecli.check_hosts(obj, {"spec": {"hosts": ["shop.example.com", "other.example.org"]}})


def purge_with(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "p1"}, "status": status}


def test_the_verdict_follows_the_complete_condition_and_the_phase() -> None:
    done = purgecli.verdict(purge_with({"phase": "Complete", "conditions": [
        {"type": "Complete", "status": "True", "reason": "AllPodsConfirmed",
         "message": "6 edge pods in 3 regions confirmed"}]}))
    assert done == purgecli.Verdict(True, True, "6 edge pods in 3 regions confirmed")
    failed = purgecli.verdict(purge_with({"phase": "Failed", "conditions": [
        {"type": "Complete", "status": "False", "reason": "InvalidSpec",
         "message": "spec.urls[0]: host 'x' is not served"}]}))
    assert (failed.done, failed.complete) == (True, False)
    assert purgecli.verdict(None) == purgecli.Verdict(
        True, False, "the ContentPurge was deleted before it completed")
    waiting = purgecli.verdict(purge_with({
        "phase": "InProgress", "pods": 2, "confirmed": 1, "regions": [
            {"name": "eu-west", "confirmed": 1, "pods": [
                {"name": "a", "state": "Confirmed"},
                {"name": "b", "state": "Error", "message": "unreachable: refused"}]}]}))
    assert not waiting.done and not waiting.complete
    assert waiting.summary == ("phase InProgress: 1/2 edge pods confirmed\n"
                               "  region eu-west: 1/2 confirmed\n"
                               "    b: Error: unreachable: refused")


def test_the_command_exits_2_on_bad_input_and_creates_nothing(tmp_path: Any) -> None:
    kubeconfig = tmp_path / "kubeconfig"  # a cluster nothing listens at: never reached
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: team}}]\n")
    result = subprocess.run([sys.executable, "-m", "aerocdn.cli", "purge", "shop", "--name",
                             "p1", "--url", "shop.example.com/#x", "--kubeconfig",
                             str(kubeconfig)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ContentPurge/p1: spec.urls[0] (--url): ")
    assert lines[-1] == "error: nothing was created"
    assert "Traceback" not in result.stderr
