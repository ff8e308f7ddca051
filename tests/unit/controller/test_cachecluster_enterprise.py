"""The Enterprise branch of the CacheCluster reconcile in process: the Secrets the spec names,
the operator's info client logging in (and over TLS), users made through the admin API.

Community Edition (the only Aerospike server this project can run; no Enterprise binary or
feature key exists here) has no security: it refuses the ``security`` context, so the admin
API cannot be exercised against a real server. The nodes below answer the captured CE
replies, and a stand-in of the client's admin methods (tests/unit/controller/aerofake.py)
keeps users the way the Aerospike docs describe. What the real client does with these calls
was never observed.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

import pytest
from tests.unit.aerospike.aerofixtures import Fixtures
from tests.unit.controller.ccworld import NS, World, cc_object

from aerocdn.aerospike.users import password_digest
from aerocdn.controller.conditions import Cond
from aerocdn.controller.runtime import Runtime, reconcile_once
from aerocdn.controller.users import users_waiting
from aerospike import exception as aerr

EE = {"edition": "enterprise", "featureKeySecretRef": {"name": "features"}}
ACCESS = {"adminSecretRef": {"name": "ops"}, "edgeSecretName": "edge-pw",
          "users": [{"name": "reader", "secretName": "reader-pw", "roles": ["read"]}]}
THREE = ("cc-0", "cc-1", "cc-2")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": NS,
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                                         "the whole Secret, in clear"}},
            "data": {k.replace("_", "."): b64(v) for k, v in data.items()}}


def put_secrets(world: World, admin: str = "s3cret", edge: str = "edge1") -> None:
    world.kube.put(secret("ops", username="operator", password=admin))
    world.kube.put(secret("edge-pw", password=edge))
    world.kube.put(secret("reader-pw", password="r"))


def new_cluster_users(world: World) -> None:
    """A new Enterprise cluster with security on: only admin/admin, role user-admin."""
    world.aero.users = {"admin": ("admin", {"user-admin"})}


async def ready_three(fx: Fixtures, world: World, **spec: Any) -> None:
    world.kube.put(cc_object(size=3, **{**EE, **spec}))
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    world.kube.run_statefulsets(NS)
    world.aero.three_stable(fx, tuple(world.pods()), enterprise=True)
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    assert world.condition("Ready")["status"] == "True", world.cc()["status"]


def commands(world: World) -> list[str]:
    return [c for c in world.aero.admin if c != "admin_query_users_info"]


# ------------------------------------------------------------------ missing Secrets


@pytest.mark.parametrize(("present", "field", "message"), [
    ({}, "spec.accessControl.adminSecretRef", "Secret ops does not exist"),
    ({"ops": {"username": "operator"}}, "spec.accessControl.adminSecretRef",
     "Secret ops has no key password"),
    ({"ops": {"username": "operator", "password": "p"}}, "spec.accessControl.edgeSecretName",
     "Secret edge-pw does not exist"),
    ({"ops": {"username": "operator", "password": "p"}, "edge-pw": {"password": "e"},
      "reader-pw": {"pass": "r"}}, "spec.accessControl.users[0].secretName",
     "Secret reader-pw has no key password"),
])
async def test_a_missing_secret_or_key_is_a_condition_naming_them_and_nothing_is_created(
        present: dict[str, dict[str, str]], field: str, message: str) -> None:
    world = World.make()
    for name, data in present.items():
        world.kube.put(secret(name, **data))
    world.kube.put(cc_object(**EE, accessControl=ACCESS))
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "SecretInvalid")
    assert degraded["message"].startswith(f"fix the Secret: {field}: {message}")
    warnings = [e for e in world.events() if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["SecretInvalid"]
    assert message in warnings[0]["message"]
    assert world.kube.kind_of("StatefulSet", NS) == []
    # permanent: the next reconcile (resync) waits for a change: no Secret read, no write
    world.kube.reset_calls()
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    assert [(c.verb, c.kind) for c in world.kube.calls] == [("GET", "CacheCluster")]


async def test_the_tls_secret_is_checked_for_the_files_the_client_needs() -> None:
    world = World.make()
    world.kube.put(secret("eu-tls", ca_crt="CA", tls_crt="CERT"))
    world.kube.put(cc_object(**EE, tls={"secretName": "eu-tls", "clientAuthentication": True}))
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    degraded = world.condition("Degraded")
    assert "spec.tls.secretName: Secret eu-tls has no key tls.key" in degraded["message"]


async def test_a_secret_change_re_runs_the_clusters_naming_it_and_they_recover() -> None:
    """Through the operator's runtime: the watch event of the fixed Secret clears the
    permanent error; the store keeps only Secrets a CacheCluster names, only their data."""
    world = World.make()
    runtime = Runtime()
    runtime.ctx = world.ctx
    cc = world.kube.put(cc_object(**EE, accessControl=ACCESS))
    runtime.store.upsert("aerocdn.dev/v1alpha1", "CacheCluster", cc)
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    assert world.condition("Degraded")["reason"] == "SecretInvalid"
    assert ("CacheCluster", NS, "cc") in world.ctx.failed_generation

    unrelated = secret("someone-elses", token="x")
    runtime.secret_changed("ADDED", {**unrelated, "metadata": {
        **unrelated["metadata"], "resourceVersion": "1"}}, NS, "someone-elses")
    assert runtime.store.get("v1", "Secret", NS, "someone-elses") is None
    assert runtime.queue._queued == set()

    put_secrets(world)
    ops = world.kube.obj("Secret", NS, "ops")
    assert ops is not None
    runtime.secret_changed("ADDED", ops, NS, "ops")
    kept = runtime.store.get("v1", "Secret", NS, "ops")
    assert kept is not None and kept["data"] == ops["data"]
    assert "annotations" not in kept["metadata"]  # no clear-text copy in memory
    assert ("CacheCluster", NS, "cc") not in world.ctx.failed_generation
    assert runtime.queue._queued == {("CacheCluster", NS, "cc")}
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    assert world.condition("Degraded")["status"] == "False"
    assert len(world.kube.kind_of("StatefulSet", NS)) == 1

    runtime.secret_changed("DELETED", ops, NS, "ops")
    assert runtime.store.get("v1", "Secret", NS, "ops") is None


# ------------------------------------------------------------------ users


async def test_new_cluster_users_are_made_then_the_default_admin_goes_then_nothing(
        fx: Fixtures) -> None:
    world = World.make()
    new_cluster_users(world)
    put_secrets(world)
    await ready_three(fx, world, accessControl=ACCESS)
    # the Secret's admin did not exist: logged in as admin/admin, made the users
    assert commands(world) == [
        "admin_create_user operator *** data-admin,sys-admin,user-admin",
        "admin_create_user aerocdn-edge *** read-write",
        "admin_create_user reader *** read",
    ]
    assert world.aero.configs[-1]["user"] == "admin"
    applied = world.condition("UsersApplied")
    assert (applied["status"], applied["reason"]) == ("True", "InSync")
    assert [e["reason"] for e in world.events("UsersChanged")] == ["UsersChanged"]
    digests = world.cc()["status"]["userPasswordDigests"]
    uid = world.cc()["metadata"]["uid"]
    assert digests == {"operator": password_digest(uid, "operator", "s3cret"),
                       "aerocdn-edge": password_digest(uid, "aerocdn-edge", "edge1"),
                       "reader": password_digest(uid, "reader", "r")}
    assert "s3cret" not in str(world.cc()) and "edge1" not in str(world.events())

    world.aero.admin.clear()
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    assert world.aero.configs[-1]["user"] == "operator"
    assert commands(world) == ["admin_drop_user admin"]
    assert set(world.aero.users or {}) == {"operator", "aerocdn-edge", "reader"}

    world.aero.admin.clear()
    world.kube.reset_calls()
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    assert world.aero.admin == ["admin_query_users_info"]  # asked, nothing sent
    assert world.kube.writes() == []


async def test_a_changed_password_and_roles_are_applied_and_only_they(fx: Fixtures) -> None:
    world = World.make()
    new_cluster_users(world)
    put_secrets(world)
    await ready_three(fx, world, accessControl=ACCESS)
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")  # drops admin
    world.aero.admin.clear()
    world.kube.put(secret("edge-pw", password="edge2"))
    world.edit(accessControl={**ACCESS, "users": [
        {"name": "reader", "secretName": "reader-pw", "roles": ["read", "truncate"]}]})
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    assert commands(world) == ["admin_set_password aerocdn-edge ***",
                               "admin_grant_roles reader truncate"]
    assert (world.aero.users or {})["aerocdn-edge"][0] == "edge2"
    assert world.condition("UsersApplied")["status"] == "True"


async def test_a_refused_admin_command_is_a_condition_and_one_warning(fx: Fixtures) -> None:
    world = World.make()
    new_cluster_users(world)
    put_secrets(world)
    world.aero.admin_faults["admin_create_user"] = aerr.RoleViolation(
        81, "AEROSPIKE_ROLE_VIOLATION", "x.c", 1, False)
    await ready_three(fx, world, accessControl=ACCESS)
    applied = world.condition("UsersApplied")
    assert (applied["status"], applied["reason"]) == ("False", "UserCommandFailed")
    assert "create operator data-admin,sys-admin,user-admin: RoleViolation (code 81)" \
        in applied["message"]
    assert "userPasswordDigests" not in world.cc()["status"] or \
        not world.cc()["status"]["userPasswordDigests"]
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")  # the same failure again
    assert len(world.events("UserCommandFailed")) == 1
    del world.aero.admin_faults["admin_create_user"]
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    assert world.condition("UsersApplied")["status"] == "True"


async def test_users_wait_for_a_stable_cluster(fx: Fixtures) -> None:
    world = World.make()
    new_cluster_users(world)
    put_secrets(world)
    world.kube.put(cc_object(size=3, **EE, accessControl=ACCESS))
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    world.kube.run_statefulsets(NS)
    world.aero.two_migrating(fx, ("cc-0", "cc-1"))  # two of three, migrating: not stable
    world.aero.users = {"admin": ("admin", {"user-admin"})}
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    applied = world.condition("UsersApplied")
    assert (applied["status"], applied["reason"]) == ("False", "WaitingForStableCluster")
    assert commands(world) == []


def test_users_waiting_decides_from_probe_stability_and_work_in_progress() -> None:
    done = Cond("UsersApplied", True, "InSync", "3 users")
    assert users_waiting("aerospike", True, "", None) is None
    assert users_waiting("kubernetes", True, "", None) == Cond(
        "UsersApplied", False, "NoAerospikeProbe",
        "users are created through Aerospike's admin API, which the operator asks only "
        "with --aerospike-probe=aerospike")
    waiting = users_waiting("aerospike", True, "a node is leaving", None)
    assert waiting is not None and waiting.reason == "WaitingForStableCluster"
    assert "a node is leaving" in waiting.message
    assert users_waiting("aerospike", False, "", done) == done  # kept while busy


# ------------------------------------------------------------------ the info client


async def test_the_info_client_uses_tls_on_4333_with_the_secret_files(
        fx: Fixtures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    world = World.make()
    world.kube.put(secret("eu-tls", ca_crt="CA-PEM", tls_crt="CERT-PEM", tls_key="KEY-PEM"))
    await ready_three(fx, world, tls={"secretName": "eu-tls", "tlsName": "cache.eu",
                                      "clientAuthentication": True})
    config = world.aero.configs[-1]
    assert config["hosts"][0][1:] == (4333, "cache.eu")
    tls = config["tls"]
    assert Path(tls["cafile"]).read_text() == "CA-PEM"
    assert Path(tls["certfile"]).read_text() == "CERT-PEM"
    assert Path(tls["keyfile"]).read_text() == "KEY-PEM"
    assert Path(tls["keyfile"]).stat().st_mode & 0o077 == 0
    assert "user" not in config  # TLS without access control: no login
    # a rotated certificate: new files in a new directory, the next client uses them
    world.kube.put(secret("eu-tls", ca_crt="CA2", tls_crt="CERT2", tls_key="KEY2"))
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    assert Path(world.aero.configs[-1]["tls"]["cafile"]).read_text() == "CA2"
    assert world.aero.configs[-1]["tls"]["cafile"] != tls["cafile"]
    assert not Path(tls["cafile"]).exists()  # the old files are gone


async def test_a_user_named_like_the_admin_of_the_secret_is_refused_naming_both() -> None:
    world = World.make()
    put_secrets(world)
    world.kube.put(cc_object(**EE, accessControl={**ACCESS, "users": [
        {"name": "operator", "secretName": "reader-pw", "roles": ["read"]}]}))
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    degraded = world.condition("Degraded")
    assert degraded["reason"] == "SecretInvalid"
    assert "spec.accessControl.users[0].name: 'operator' is the operator's admin (Secret ops)" \
        in degraded["message"]
    assert world.kube.kind_of("StatefulSet", NS) == []
