"""Configuration changes without restarts (issue 13, item 2), through the production branch of
the reconcile: dynamic keys reach every running node by set-config and are read back; a
change of only those restarts no pod; a static change still rolls pods one at a time.
The nodes answer get-config with the recorded CE 8.1.2.0 replies and keep what set-config
sets (unknown and static keys are refused as the server does: ERROR:4)."""

from __future__ import annotations

from typing import Any

from tests.unit.aerospike.aerofixtures import Fixtures
from tests.unit.controller.ccworld import NS, World
from tests.unit.controller.test_cachecluster_aerospike import THREE, ready_three

CACHE = "get-config:context=namespace;id=cache"


def hashes(world: World) -> dict[str, Any]:
    sts = world.kube.obj("StatefulSet", NS, world.name)
    assert sts is not None
    return dict(sts["spec"]["template"]["metadata"]["annotations"])


def set_commands(world: World) -> list[tuple[str, str]]:
    return [(p, c) for p, c in world.aero.asked if c.startswith("set-config:")]


async def test_nodes_hold_the_dynamic_settings_and_say_so(fx: Fixtures) -> None:
    world = World.make()
    await ready_three(fx, world)
    # The recorded nodes run stock settings (nsup-period 0, default-ttl 0, proto-fd-max
    # 1024...): the rendered ones are set on every node, without a restart.
    sent = set_commands(world)
    assert {p for p, _ in sent} == set(THREE)
    assert ("cc-0", "set-config:context=namespace;id=cache;nsup-period=120") in sent
    assert ("cc-0", "set-config:context=service;proto-fd-max=15000") in sent
    for pod in THREE:
        assert world.aero.nodes[pod].config[CACHE]["nsup-period"] == "120"
    assert world.condition("ConfigApplied")["status"] == "True"
    assert world.events("ConfigApplied")
    assert world.events("RollingRestart") == []

    # In sync: the next reconcile reads, sets nothing, writes nothing.
    world.aero.asked.clear()
    world.kube.reset_calls()
    await world.reconcile()
    assert set_commands(world) == []
    assert world.kube.writes() == []


async def test_a_dynamic_change_restarts_nothing(fx: Fixtures) -> None:
    world = World.make()
    await ready_three(fx, world)
    before = hashes(world)
    world.aero.asked.clear()
    world.edit(namespaces=[{"name": "cache", "storage": {"size": "1Gi"},
                            "defaultTTLSeconds": 3600, "evictUsedPct": 60}],
               aerospikeConfig={"service": {"migrate-threads": 2}})
    await world.reconcile()
    assert hashes(world) == before  # the pod template did not change: no roll
    assert world.events("RollingRestart") == [] and sorted(world.pods()) == list(THREE)
    for pod in THREE:
        assert (pod, "set-config:context=namespace;id=cache;default-ttl=3600") in \
            world.aero.asked
        assert (pod, "set-config:context=namespace;id=cache;evict-used-pct=60") in \
            world.aero.asked
        node = world.aero.nodes[pod].config
        assert node[CACHE]["default-ttl"] == "3600"
        assert node[CACHE]["storage-engine.evict-used-pct"] == "60"
        assert node["get-config:context=service"]["migrate-threads"] == "2"
    assert world.condition("ConfigApplied")["reason"] == "InSync"
    # The ConfigMap carries the new values for pods that start later.
    cm = world.kube.obj("ConfigMap", NS, "cc-config")
    assert cm is not None and "default-ttl 3600" in cm["data"]["aerospike.conf"]


async def test_a_static_change_rolls_pods(fx: Fixtures) -> None:
    world = World.make()
    await ready_three(fx, world)
    before = hashes(world)
    world.edit(aerospikeConfig={"service": {"auto-pin": "none"}})
    await world.reconcile()
    assert hashes(world) != before
    assert len(world.events("RollingRestart")) == 1  # one pod at a time


async def test_a_refused_setting_is_reported_not_retried_blindly(fx: Fixtures) -> None:
    """A key the table calls dynamic but the server refuses (here: the node does not know
    it) is a ConfigApplied=False condition naming the pod and the error."""
    world = World.make()
    await ready_three(fx, world)
    for node in world.aero.nodes.values():
        node.config["get-config:context=service"].pop("query-threads-limit", None)
    world.edit(aerospikeConfig={"service": {"query-threads-limit": 64}})
    await world.reconcile()
    cond = world.condition("ConfigApplied")
    assert (cond["status"], cond["reason"]) == ("False", "SetConfigFailed")
    assert "pod cc-0" in cond["message"] and "invalid set-config parameter" in cond["message"]
    assert sorted(world.pods()) == list(THREE)  # nothing restarted for it
