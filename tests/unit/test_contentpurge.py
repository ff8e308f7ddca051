"""ContentPurge: the model and CRD (every target admitted is one the edge interprets), and the
pure planner the operator follows (which pods to call, retries, pods leaving, completion)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aerocdn.api import InputError, parse_object
from aerocdn.api.contentpurge import DOT_SEGMENT, TARGET, ContentPurgeSpec, ContentPurgeStatus
from aerocdn.api.crd import all_crds
from aerocdn.controller import purgeplan
from aerocdn.controller.purgeplan import EdgePod
from aerocdn.edge.config import EdgeConfig, OriginConfig
from aerocdn.edge.purge import Purger


def purge(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentPurge",
            "metadata": {"name": "p1", "namespace": "team"},
            "spec": {"contentEdgeRef": {"name": "site"}, **spec}}


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(InputError) as exc:
        parse_object(raw)
    return [f"{p.field}: {p.message}" for p in exc.value.problems]


# --- the model --------------------------------------------------------------------------------

def test_a_purge_names_urls_and_prefixes_of_a_contentedge() -> None:
    obj = parse_object(purge(urls=["https://www.example.com/a.css", "www.example.com/b?v=1"],
                             prefixes=["www.example.com/img/"], ttlSecondsAfterFinished=600))
    spec = obj.spec
    assert isinstance(spec, ContentPurgeSpec)
    assert spec.content_edge_ref.name == "site"
    assert purgeplan.bodies(spec) == [
        {"url": "https://www.example.com/a.css"}, {"url": "http://www.example.com/b?v=1"},
        {"prefix": "http://www.example.com/img/"}]


def test_a_purge_without_targets_is_refused() -> None:
    assert problems(purge()) == ["spec: name at least one target in urls, prefixes or tags"]


@pytest.mark.parametrize("field,value", [
    ("urls", "www.example.com/a*"),              # wildcard
    ("urls", "www.example.com/a#frag"),          # fragment
    ("urls", "ftp://www.example.com/a"),         # scheme
    ("urls", "www.example.com/%zz"),             # broken escape
    ("urls", "www.example.com/%00"),             # encoded NUL
    ("urls", "www.example.com/a b"),             # space
    ("urls", "WWW.example.com/a"),               # host not lower case
    ("prefixes", "www.example.com/a/../../b"),   # climbs above the root
    ("prefixes", "www.example.com/./a"),         # dot segment
    ("prefixes", "www.example.com/%2E%2e/a"),    # escaped dot segment
    ("urls", "www.example.com/a?q=1#x"),         # '#' in the query
])
def test_targets_the_edge_cannot_interpret_are_refused_naming_the_field(field: str,
                                                                     value: str) -> None:
    found = problems(purge(**{field: ["www.example.com/ok", value]}))
    assert len(found) == 1 and found[0].startswith(f"spec.{field}[1]: "), found


def crd_spec_schema() -> dict[str, Any]:
    crd = all_crds()["aerocdn.dev_contentpurges.yaml"]
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]


def test_the_crd_carries_the_target_grammar_and_its_rules() -> None:
    spec = crd_spec_schema()
    for field in ("urls", "prefixes"):
        assert spec["properties"][field]["items"]["pattern"] == TARGET
        (rule,) = spec["properties"][field]["x-kubernetes-validations"]
        assert DOT_SEGMENT in rule["rule"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert "self == oldSelf" in rules  # a purge is an action: its spec never changes
    assert spec["required"] == ["contentEdgeRef"]


EDGE = EdgeConfig(content_edge="site", namespace="team", region="eu-west",
                  hosts=("www.example.com", "*.cdn.example.com"),
                  origin=OriginConfig(url="http://origin.test"))
PURGER = Purger(EDGE, None, None, None, None)  # type: ignore[arg-type]  # _purge_target only

PATH_CHARS = st.lists(st.characters(min_codepoint=0x21, max_codepoint=0x2FF)
                      | st.sampled_from(["%2F", "%41", "%2e", "%e2%82%ac", "/", "//", ".",
                                         "%", "%0", "%00", ".."]),
                      max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(scheme=st.sampled_from(["", "http://", "https://"]),
       host=st.sampled_from(["www.example.com", "a.cdn.example.com"]),
       port=st.sampled_from(["", ":8080"]), path=PATH_CHARS,
       query=st.none() | st.text(alphabet=st.characters(min_codepoint=0x21,
                                                          max_codepoint=0x7e), max_size=20),
       prefix=st.booleans())
def test_every_target_the_model_admits_is_interpreted_by_the_edge(
        scheme: str, host: str, port: str, path: str, query: str | None, prefix: bool) -> None:
    value = f"{scheme}{host}{port}/{path}" + (f"?{query}" if query is not None else "")
    field = "prefixes" if prefix else "urls"
    try:
        obj = parse_object(purge(**{field: [value]}))
    except InputError:
        return  # refused at admission: nothing to carry out
    assert re.search(TARGET, value)
    (body,) = purgeplan.bodies(obj.spec)  # type: ignore[arg-type]
    PURGER._purge_target(body)  # raises ValueError (a 400) for what it cannot interpret


# --- the planner ------------------------------------------------------------------------------

PODS = [EdgePod("site-eu-west-a", "eu-west", "10.0.0.1"),
        EdgePod("site-eu-west-b", "eu-west", "10.0.0.2"),
        EdgePod("site-us-east-a", "us-east", "10.0.1.1")]
REGIONS = ["eu-west", "us-east"]


def test_every_pod_is_due_at_first_and_grouped_by_region() -> None:
    step = purgeplan.plan(REGIONS, PODS, ContentPurgeStatus(), now=100.0)
    assert [p.name for p in step.due] == [p.name for p in PODS]
    assert [(r.name, [p.name for p in r.pods]) for r in step.status.regions] == [
        ("eu-west", ["site-eu-west-a", "site-eu-west-b"]), ("us-east", ["site-us-east-a"])]
    assert (step.status.pods, step.status.confirmed) == (3, 0)


def test_confirmed_pods_are_not_called_again_and_failed_ones_back_off() -> None:
    first = purgeplan.plan(REGIONS, PODS, ContentPurgeStatus(), now=100.0).status
    after = purgeplan.record(first, {
        "site-eu-west-a": (True, "1 targets purged"),
        "site-eu-west-b": (False, "unreachable: connection refused"),
        "site-us-east-a": (True, "1 targets purged")}, 100.0, "t")
    assert (after.confirmed, after.failed) == (2, 1)
    assert purgeplan.verdict(after)[0] == "InProgress"
    assert "eu-west/site-eu-west-b: unreachable" in purgeplan.verdict(after)[2]
    waiting = purgeplan.plan(REGIONS, PODS, after, now=101.0)
    assert waiting.due == [] and waiting.requeue == pytest.approx(1.0)  # 2 s backoff
    due = purgeplan.plan(REGIONS, PODS, after, now=102.0)
    assert [p.name for p in due.due] == ["site-eu-west-b"]
    again = purgeplan.record(due.status, {"site-eu-west-b": (False, "HTTP 401")}, 102.0, "t")
    (pod,) = [p for r in again.regions for p in r.pods if p.name == "site-eu-west-b"]
    assert (pod.attempts, pod.next_attempt_at) == (2, 106.0)  # 2, 4, 8 ... capped at 60 s
    assert purgeplan.backoff(30) == purgeplan.BACKOFF_MAX


def test_complete_when_every_pod_confirmed_and_pods_that_left_are_dropped() -> None:
    first = purgeplan.plan(REGIONS, PODS, ContentPurgeStatus(), now=0.0).status
    partial = purgeplan.record(first, {"site-eu-west-a": (True, "ok"),
                                       "site-us-east-a": (True, "ok")}, 0.0, "t")
    # site-eu-west-b was deleted (its nginx cache went with it)
    step = purgeplan.plan(REGIONS, PODS[::2], partial, now=1.0)
    assert step.due == [] and step.requeue is None
    phase, reason, message = purgeplan.verdict(step.status)
    assert (phase, reason) == ("Complete", "AllPodsConfirmed")
    assert "eu-west 1/1" in message and "us-east 1/1" in message


def test_a_pod_that_appears_before_completion_must_confirm_too_not_after() -> None:
    first = purgeplan.plan(REGIONS, PODS[:1], ContentPurgeStatus(), now=0.0).status
    done = purgeplan.record(first, {"site-eu-west-a": (True, "ok")}, 0.0, "t")
    newcomer = EdgePod("site-us-east-z", "us-east", "10.0.1.9")
    step = purgeplan.plan(REGIONS, [PODS[0], newcomer], done, now=1.0)
    assert [p.name for p in step.due] == ["site-us-east-z"]
    finished = done.model_copy(update={"phase": "Complete"})
    assert purgeplan.plan(REGIONS, [PODS[0], newcomer], finished, now=1.0).due == []


def test_a_pod_without_an_address_waits_and_no_pods_is_not_complete() -> None:
    step = purgeplan.plan(REGIONS, [EdgePod("site-eu-west-a", "eu-west", None)],
                          ContentPurgeStatus(), now=0.0)
    assert step.due == [] and step.requeue == purgeplan.BACKOFF_BASE
    assert purgeplan.verdict(step.status)[0] == "InProgress"
    empty = purgeplan.plan(REGIONS, [], ContentPurgeStatus(), now=0.0)
    assert purgeplan.verdict(empty.status)[:2] == ("Pending", "NoEdgePods")
    assert [r.name for r in empty.status.regions] == REGIONS


def test_edge_pods_from_pod_objects() -> None:
    def pod(name: str, phase: str, ip: str | None, deleting: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": {"aerocdn.dev/region": "eu-west"}}
        if deleting:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return {"metadata": meta, "status": {"phase": phase, "podIP": ip}}

    assert purgeplan.edge_pods([pod("b", "Running", "10.0.0.2"), pod("a", "Pending", None),
                                pod("c", "Running", "10.0.0.3", deleting=True),
                                pod("d", "Failed", "10.0.0.4")]) == [
        EdgePod("a", "eu-west", None), EdgePod("b", "eu-west", "10.0.0.2")]


def test_answers_of_a_pod_in_words() -> None:
    ok = {"ok": True, "l1": {"purged": 2, "absent": 1, "failed": 0},
          "l2": {"eu": {"status": "ok", "rule": "written"}}}
    assert purgeplan.outcome([(200, ok, ""), (200, ok, "")]) == (
        True, "2 targets purged in L1 and L2 (4 nginx entries)")
    l2_down = {"ok": False, "l1": {"purged": 0, "failed": 0},
               "l2": {"eu": {"status": "failed: timeout"}}}
    assert purgeplan.outcome([(200, l2_down, "")]) == (False, "L2 eu: failed: timeout")
    assert purgeplan.outcome([(401, {"error": "wrong token"}, "")]) == (
        False, "HTTP 401: wrong token")
    assert purgeplan.outcome([(None, None, "ClientConnectorError: refused")]) == (
        False, "unreachable: ClientConnectorError: refused")


def test_hosts_the_contentedge_does_not_serve_name_the_field() -> None:
    spec = ContentPurgeSpec.model_validate({
        "contentEdgeRef": {"name": "site"},
        "urls": ["https://a.cdn.example.com/x"], "prefixes": ["other.example.org/img/"]})
    assert purgeplan.check_hosts(spec, ["www.example.com", "*.cdn.example.com"]) == \
        purgeplan.Invalid("spec.prefixes[0]", "host 'other.example.org' is not served by "
                          "ContentEdge site (its hosts: www.example.com, *.cdn.example.com)")
    assert purgeplan.check_hosts(spec, ["other.example.org", "*.cdn.example.com"]) is None


def test_finished_purges_expire_after_their_ttl() -> None:
    done = ContentPurgeStatus(phase="Complete")
    assert purgeplan.expired(done, None, 100.0, 50.0) is None
    assert purgeplan.expired(done, 60, 100.0, 50.0) == 10.0
    assert purgeplan.expired(done, 60, 120.0, 50.0) == -10.0
    assert purgeplan.expired(ContentPurgeStatus(phase="InProgress"), 60, 120.0, 50.0) is None


def test_edge_admin_address_overrides_are_parsed_or_refused_naming_the_item() -> None:
    from aerocdn.controller.runtime import parse_edge_admin_addresses

    assert parse_edge_admin_addresses(["site-a=127.0.0.1:9091", "site-b=[::1]:9092"]) == {
        "site-a": "127.0.0.1:9091", "site-b": "[::1]:9092"}
    for bad in ("site-a", "site-a=127.0.0.1", "=127.0.0.1:1", "site-a=127.0.0.1:x"):
        with pytest.raises(ValueError, match="edge admin address"):
            parse_edge_admin_addresses([bad])


# --- tags -------------------------------------------------------------------------------------

def test_tags_are_targets_and_become_tag_bodies() -> None:
    obj = parse_object(purge(tags=["product-42", "cat:shoes"]))
    assert purgeplan.bodies(obj.spec) == [  # type: ignore[arg-type]
        {"tag": "product-42"}, {"tag": "cat:shoes"}]
    for bad in ("two words", "a,b", "", "x" * 257, "caf\u00e9"):
        found = problems(purge(tags=[bad]))
        assert len(found) == 1 and found[0].startswith("spec.tags[0]: "), (bad, found)


@settings(max_examples=300, deadline=None)
@given(tag=st.text(max_size=300))
def test_every_tag_the_model_admits_is_one_the_edge_accepts_and_an_origin_can_send(
        tag: str) -> None:
    from aerocdn.edge.policy import parse_tags

    try:
        parse_object(purge(tags=[tag]))
    except InputError:
        return
    assert Purger._purge_tag({"tag": tag}) == tag
    assert parse_tags((("Surrogate-Key", tag),), "surrogate-key") == (tag,)
    assert tag in parse_tags((("Surrogate-Key", f"x,{tag} y"),), "surrogate-key")


def test_a_soft_purge_asks_every_pod_to_mark_stale() -> None:
    obj = parse_object(purge(urls=["www.example.com/a"], tags=["t"], soft=True))
    assert purgeplan.bodies(obj.spec) == [  # type: ignore[arg-type]
        {"url": "http://www.example.com/a", "soft": True}, {"tag": "t", "soft": True}]
    assert PURGER._soft({"url": "x", "soft": True}) is True
