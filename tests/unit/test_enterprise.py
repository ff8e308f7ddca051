"""Enterprise Edition (issue 13 item 4): feature key, TLS and access control, rendered only for
Enterprise; the operator's client settings; the pure user plan."""

from __future__ import annotations

import base64
import copy
import tomllib
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError
from tests.unit.api_walk import BASE, constraint_cases
from tests.unit.test_render import (
    K8S_VERSION,
    by_kind,
    cachecluster,
    conf_of,
    contentedge,
    pod_hash,
)

from aerocdn.aerospike.client import AerospikeInfo, ClientSecurity, ClientTls
from aerocdn.aerospike.parse import HostPort
from aerocdn.aerospike.security import (
    SecretProblem,
    client_security,
    referenced_secrets,
    tls_files,
)
from aerocdn.aerospike.users import (
    ADMIN_ROLES,
    DEFAULT_ADMIN,
    DesiredUser,
    current_users,
    desired_users,
    login_candidates,
    password_digest,
    plan_users,
)
from aerocdn.api import InputError, parse_object
from aerocdn.api.crd import all_crds
from aerocdn.edge.config import CacheClusterRef, EdgeConfig
from aerocdn.edge.tiers import AerospikeTier, TierError
from aerocdn.render.cachecluster import render_cachecluster
from aerocdn.render.contentedge import render_contentedge

EE = {"edition": "enterprise", "featureKeySecretRef": {"name": "aerospike-features"}}
TLS = {"secretName": "eu-tls"}
ACCESS = {"adminSecretRef": {"name": "eu-admin"}, "edgeSecretName": "eu-edge",
          "users": [{"name": "edge", "secretName": "edge-pw", "roles": ["read-write"]}]}
ENTERPRISE_KEYS = ("feature-key-file", "tls", "security", "tls-port", "tls-name")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (sts,) = by_kind(objs, "StatefulSet")
    c: dict[str, Any] = sts["spec"]["template"]["spec"]["containers"][0]
    return c


def volumes(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for sts in by_kind(objs, "StatefulSet")
            for v in sts["spec"]["template"]["spec"]["volumes"]}


def validate(objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


# ------------------------------------------------------------------ API rules


@pytest.mark.parametrize(("spec", "field"), [
    ({**EE, "accessControl": {**ACCESS, "users": [
        {"name": "aerocdn-edge", "secretName": "x", "roles": ["read"]}]}},
     r"users\[0\].name: aerocdn-edge and aerocdn-exporter are the operator's own users"),
    ({**EE, "exporter": {"enabled": True}, "accessControl": ACCESS},
     "exporterSecretName is required when spec.exporter.enabled"),
    ({**EE, "accessControl": {"adminSecretRef": {"name": "a"}}},
     "accessControl.edgeSecretName: required field is missing"),
    ({"edition": "enterprise"}, "spec.featureKeySecretRef is required"),
    ({"featureKeySecretRef": {"name": "f"}}, "spec.featureKeySecretRef is Enterprise-only"),
    ({"tls": TLS}, "spec.tls is Enterprise-only"),
    ({"accessControl": ACCESS}, "spec.accessControl is Enterprise-only"),
    ({"edition": "community", "tls": TLS}, "spec.tls is Enterprise-only"),
    ({**EE, "tls": {**TLS, "service": False}}, "tls needs service or fabric"),
    ({**EE, "tls": {**TLS, "service": False, "fabric": True, "clientAuthentication": True}},
     "tls.clientAuthentication applies to the TLS service port"),
])
def test_pydantic_refuses_with_a_message_naming_the_field(spec: dict[str, Any],
                                                          field: str) -> None:
    with pytest.raises(InputError, match=field):
        cachecluster(spec)


def test_crd_rules_treat_an_absent_edition_as_community() -> None:
    crd = all_crds()["aerocdn.dev_cacheclusters.yaml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["edition"]["default"] == "community"
    rules = {r["fieldPath"]: r for r in spec["x-kubernetes-validations"]
             if r["fieldPath"] in (".featureKeySecretRef", ".tls", ".accessControl")}
    required = [r for r in spec["x-kubernetes-validations"]
                if "is required when spec.edition is enterprise" in r["message"]]
    assert len(required) == 1
    # an absent edition must not be taken for enterprise: the rule needs has() first
    assert "has(self.edition) && self.edition == 'enterprise'" in required[0]["rule"]
    for field in ("tls", "accessControl"):
        assert rules[f".{field}"]["rule"] == (
            f"(has(self.edition) && self.edition == 'enterprise') || !has(self.{field})")


ENTERPRISE_PATHS = ("spec.featureKeySecretRef", "spec.tls", "spec.accessControl")


@pytest.mark.parametrize(
    "case", [c for c in constraint_cases()
             if c.kind == "CacheCluster" and c.path.startswith(ENTERPRISE_PATHS)], ids=str)
def test_new_field_constraints_are_in_the_crd_on_an_enterprise_base(case: Any) -> None:
    """The generic walk runs on a community base, where the edition rule alone refuses these
    fields; here the same bad values on an Enterprise spec that is otherwise valid."""
    obj = copy.deepcopy(case.obj)
    obj["spec"] = {**EE, **obj["spec"]}
    fill = {"tls": TLS, "accessControl": {"adminSecretRef": {"name": "a"},
                                          "edgeSecretName": "e"}}
    for key, value in fill.items():
        if key in obj["spec"]:
            obj["spec"][key] = {**value, **obj["spec"][key]}
    users = obj["spec"].get("accessControl", {}).get("users")
    if users:
        users[0] = {**ACCESS["users"][0], **users[0]}
    with pytest.raises(InputError):
        parse_object(obj)
    schema = all_crds()["aerocdn.dev_cacheclusters.yaml"]["spec"]["versions"][0]["schema"]
    errors = list(jsonschema.Draft4Validator(schema["openAPIV3Schema"]).iter_errors(obj))
    assert errors, f"the CRD admits what the models refuse: {case}"


def test_an_enterprise_spec_with_everything_is_valid_for_both() -> None:
    obj = copy.deepcopy(BASE["CacheCluster"])
    obj["spec"].update({**EE, "tls": {**TLS, "fabric": True}, "accessControl": ACCESS})
    parse_object(obj)
    schema = all_crds()["aerocdn.dev_cacheclusters.yaml"]["spec"]["versions"][0]["schema"]
    assert not list(jsonschema.Draft4Validator(schema["openAPIV3Schema"]).iter_errors(obj))


# ------------------------------------------------------------------ rendering


def test_community_configs_carry_no_enterprise_stanza() -> None:
    for spec in ({}, {"racks": [{"id": 1, "zone": "a"}, {"id": 2, "zone": "b"}]},
                 {"exporter": {"enabled": True}}):
        objs = render_cachecluster(cachecluster(spec))
        for cm in by_kind(objs, "ConfigMap"):
            conf = cm["data"]["aerospike.conf"]
            for key in ENTERPRISE_KEYS:
                assert key not in conf, (spec, key)
        assert "feature-key" not in volumes(objs) and "tls" not in volumes(objs)


def test_feature_key_is_mounted_read_only_and_named_in_the_service_section() -> None:
    objs = render_cachecluster(cachecluster(
        {**EE, "featureKeySecretRef": {"name": "keys", "key": "ee.conf"}}))
    conf = conf_of(objs, "eu-config")
    service = conf.split("service {", 1)[1].split("}", 1)[0]
    assert "    feature-key-file /etc/aerocdn/feature-key/features.conf\n" in service
    vol = volumes(objs)["feature-key"]["secret"]
    assert vol["secretName"] == "keys"
    assert vol["items"] == [{"key": "ee.conf", "path": "features.conf"}]
    assert vol["defaultMode"] == 0o440
    mounts = {m["name"]: m for m in container(objs)["volumeMounts"]}
    assert mounts["feature-key"] == {"name": "feature-key",
                                     "mountPath": "/etc/aerocdn/feature-key", "readOnly": True}
    assert "tls" not in conf and "security" not in conf
    validate(objs)


def test_tls_service_and_fabric_render_aerospike_81_syntax() -> None:
    objs = render_cachecluster(cachecluster(
        {**EE, "tls": {**TLS, "tlsName": "cache.eu.example", "fabric": True}}))
    conf = conf_of(objs, "eu-config")
    assert ("    tls cache.eu.example {\n"
            "        cert-file /etc/aerocdn/tls/tls.crt\n"
            "        key-file /etc/aerocdn/tls/tls.key\n"
            "        ca-file /etc/aerocdn/tls/ca.crt\n"
            "    }\n") in conf
    service = conf.split("    service {\n", 1)[1].split("    }", 1)[0]
    assert "port 3000\n" in service  # edges keep the plain port
    assert "tls-port 4333\n" in service and "tls-name cache.eu.example\n" in service
    assert "tls-access-address __POD_IP__\n" in service
    # without the key Aerospike demands client certificates (cfg.c: no peer names -> auth)
    assert "tls-authenticate-client false\n" in service
    fabric = conf.split("    fabric {\n", 1)[1].split("    }", 1)[0]
    assert "tls-port 3011\n" in fabric and "tls-name cache.eu.example\n" in fabric
    ports = {p["name"]: p["containerPort"] for p in container(objs)["ports"]}
    assert ports["tls-service"] == 4333 and ports["tls-fabric"] == 3011
    services = {s["metadata"]["name"]: s for s in by_kind(objs, "Service")}
    client_ports = {p["name"]: p["port"] for p in services["eu"]["spec"]["ports"]}
    assert client_ports == {"service": 3000, "tls-service": 4333}
    headless = {p["name"] for p in services["eu-headless"]["spec"]["ports"]}
    assert {"tls-service", "tls-fabric"} <= headless
    secret = volumes(objs)["tls"]["secret"]
    assert secret["secretName"] == "eu-tls"
    assert {i["key"] for i in secret["items"]} == {"tls.crt", "tls.key", "ca.crt"}
    assert {"name": "tls", "mountPath": "/etc/aerocdn/tls", "readOnly": True} in container(
        objs)["volumeMounts"]
    validate(objs)


def test_tls_defaults_name_to_the_cluster_and_client_authentication_to_any() -> None:
    objs = render_cachecluster(cachecluster({**EE, "tls": {**TLS, "clientAuthentication": True}}))
    conf = conf_of(objs, "eu-config")
    assert "    tls eu {\n" in conf and "tls-name eu\n" in conf
    assert "tls-authenticate-client any\n" in conf
    assert "tls-port 3011" not in conf  # fabric stays plain unless asked
    ports = {p["name"] for p in container(objs)["ports"]}
    assert "tls-fabric" not in ports and "tls-service" in ports


def test_fabric_only_tls_adds_no_service_port() -> None:
    objs = render_cachecluster(cachecluster({**EE, "tls": {**TLS, "service": False,
                                                           "fabric": True}}))
    conf = conf_of(objs, "eu-config")
    assert "tls-port 4333" not in conf and "tls-port 3011" in conf
    services = {s["metadata"]["name"]: s for s in by_kind(objs, "Service")}
    assert [p["name"] for p in services["eu"]["spec"]["ports"]] == ["service"]
    validate(objs)


def test_access_control_renders_the_security_context() -> None:
    objs = render_cachecluster(cachecluster({**EE, "accessControl": ACCESS}))
    conf = conf_of(objs, "eu-config")
    assert "\nsecurity {\n}\n" in conf
    # passwords never reach the pods: users are managed over the admin protocol
    assert "edge-pw" not in str(objs) and "eu-admin" not in str(objs)
    assert "eu-edge" not in str(objs)  # without the exporter nothing in the pods logs in
    validate(objs)


def test_enterprise_fields_change_the_config_hash_and_community_does_not() -> None:
    def hashes(spec: dict[str, Any]) -> str:
        (sts,) = by_kind(render_cachecluster(cachecluster(spec)), "StatefulSet")
        h: str = sts["spec"]["template"]["metadata"]["annotations"]["aerocdn.dev/config-hash"]
        return h
    base = hashes(EE)
    assert hashes({**EE, "tls": TLS}) != base
    assert hashes({**EE, "accessControl": ACCESS}) != base
    # users live in Secrets and the admin API, not in aerospike.conf: no roll for a new user
    more = {**ACCESS, "users": [*ACCESS["users"],
                                {"name": "ro", "secretName": "ro", "roles": ["read"]}]}
    assert hashes({**EE, "accessControl": more}) == hashes({**EE, "accessControl": ACCESS})


# ------------------------------------------------------------------ the operator's client


def test_client_security_from_spec_and_secrets(tmp_path: Any) -> None:
    cc = cachecluster({**EE, "tls": {**TLS, "clientAuthentication": True},
                       "accessControl": ACCESS})
    admin = {"username": b64("ops"), "password": b64("s3cret")}
    security = client_security("eu", cc.spec, admin, tmp_path)
    assert security == ClientSecurity(
        "ops", "s3cret", ClientTls(str(tmp_path / "ca.crt"), "eu", 4333,
                                   str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")))
    assert "s3cret" not in repr(security)
    assert security.port == 4333


def test_client_security_plain_community_and_fabric_only() -> None:
    assert client_security("eu", cachecluster({}).spec) == ClientSecurity()
    fabric_only = cachecluster({**EE, "tls": {**TLS, "service": False, "fabric": True}})
    assert client_security("eu", fabric_only.spec).tls is None


def test_client_security_names_the_secret_and_key_that_is_missing() -> None:
    cc = cachecluster({**EE, "accessControl": ACCESS})
    with pytest.raises(SecretProblem, match="Secret eu-admin has no key password"):
        client_security("eu", cc.spec, {"username": b64("ops")})
    with pytest.raises(SecretProblem, match="Secret eu-admin does not exist"):
        client_security("eu", cc.spec, None)
    with pytest.raises(SecretProblem, match=r"Secret eu-tls has no key ca\.crt"):
        tls_files("eu-tls", {"tls.crt": b64("c"), "tls.key": b64("k")})


def test_the_secrets_the_operator_reads() -> None:
    assert referenced_secrets(cachecluster(EE).spec) == {}
    cc = cachecluster({**EE, "tls": TLS, "accessControl": ACCESS})
    assert referenced_secrets(cc.spec) == {
        "eu-tls": ("ca.crt", "tls.crt", "tls.key"),
        "eu-admin": ("username", "password"),
        "eu-edge": ("password",),
        "edge-pw": ("password",),
    }
    exporter = cachecluster({**EE, "exporter": {"enabled": True},
                             "accessControl": {**ACCESS, "exporterSecretName": "eu-admin"}})
    # one Secret for two purposes: the admin's keys (a superset) are read
    assert referenced_secrets(exporter.spec)["eu-admin"] == ("username", "password")


class RecordingFactory:
    """Records the config the info client would be built with (no connection made)."""

    def __init__(self) -> None:
        self.configs: list[dict[str, Any]] = []

    def __call__(self, config: dict[str, Any]) -> Any:
        self.configs.append(config)
        raise ConnectionError("not connecting in a unit test")


def test_info_client_config_carries_tls_name_port_and_credentials() -> None:
    factory = RecordingFactory()
    security = ClientSecurity("ops", "pw", ClientTls("/t/ca.crt", "eu"))
    info = AerospikeInfo({"eu-0": HostPort("10.0.0.5", security.port)},
                         client_factory=factory, security=security)
    with pytest.raises(Exception, match="not connecting"):
        info.node_id_sync("eu-0")
    (config,) = factory.configs
    assert config["hosts"] == [("10.0.0.5", 4333, "eu")]
    assert config["user"] == "ops" and config["password"] == "pw"
    assert config["tls"] == {"enable": True, "cafile": "/t/ca.crt"}


def test_info_client_config_is_unchanged_without_security() -> None:
    factory = RecordingFactory()
    info = AerospikeInfo({"eu-0": HostPort("10.0.0.5", 3000)}, client_factory=factory)
    with pytest.raises(Exception, match="not connecting"):
        info.node_id_sync("eu-0")
    (config,) = factory.configs
    assert config["hosts"] == [("10.0.0.5", 3000)]
    assert "user" not in config and "tls" not in config


def test_the_real_client_accepts_the_config_keys() -> None:
    """validate_keys is on: a key the aerospike client does not know is a ParamError. A TLS
    config naming a missing CA file fails on the file, after the keys were accepted."""
    aerospike = pytest.importorskip("aerospike")
    security = ClientSecurity("ops", "pw", ClientTls("/nonexistent/ca.crt", "eu"))
    info = AerospikeInfo({"eu-0": HostPort("127.0.0.1", 1)}, timeout_ms=200, security=security)
    config = info._config(HostPort("127.0.0.1", 1))
    with pytest.raises(aerospike.exception.AerospikeError) as err:
        aerospike.client(config).connect()
    assert type(err.value).__name__ != "ParamError", err.value
    assert "CAFile" in str(err.value) or "ca" in str(err.value).lower()


# ------------------------------------------------------------------ users


SALT = "uid-1234"


def user(name: str, password: str, *roles: str) -> DesiredUser:
    return DesiredUser(name, password, frozenset(roles))


def test_desired_users_reads_secrets_and_adds_the_admin() -> None:
    cc = cachecluster({**EE, "accessControl": ACCESS})
    access = cc.spec.access_control
    assert access is not None
    secrets = {"edge-pw": {"password": b64("e")}, "eu-edge": {"password": b64("E")}}
    users = desired_users(access, {"username": b64("ops"), "password": b64("a")}, secrets)
    assert users == [user("ops", "a", *ADMIN_ROLES), user("aerocdn-edge", "E", "read-write"),
                     user("edge", "e", "read-write")]
    with pytest.raises(SecretProblem, match="Secret edge-pw has no key password"):
        desired_users(access, {"username": b64("ops"), "password": b64("a")},
                      {**secrets, "edge-pw": {}})
    with pytest.raises(SecretProblem, match="Secret eu-edge does not exist"):
        desired_users(access, {"username": b64("ops"), "password": b64("a")},
                      {"edge-pw": secrets["edge-pw"]})
    with pytest.raises(ValueError, match=r"users\[0\].name: 'edge' is the operator's admin"):
        desired_users(access, {"username": b64("edge"), "password": b64("a")}, secrets)
    with pytest.raises(ValueError, match="names the user 'aerocdn-edge'"):
        desired_users(access, {"username": b64("aerocdn-edge"), "password": b64("a")},
                      secrets)
    exporter = cachecluster({**EE, "exporter": {"enabled": True},
                             "accessControl": {**ACCESS, "exporterSecretName": "ex"}})
    assert exporter.spec.access_control is not None
    users = desired_users(exporter.spec.access_control,
                          {"username": b64("ops"), "password": b64("a")},
                          {**secrets, "ex": {"password": b64("x")}})
    assert user("aerocdn-exporter", "x", "read") in users


def test_new_cluster_logged_in_as_default_admin_creates_the_operator_admin_first() -> None:
    desired = [user("ops", "a", *ADMIN_ROLES), user("edge", "e", "read-write")]
    current = current_users({"admin": {"roles": ["user-admin"], "read_info": [0]}})
    plan = plan_users(desired, current, {}, SALT, login_user="admin")
    assert [str(a) for a in plan.actions] == [
        "create ops data-admin,sys-admin,user-admin", "create edge read-write"]
    assert plan.actions[0].password == "a"
    # next reconcile, logged in as ops: the default admin goes, nothing else changes
    again = plan_users(desired, {**current, "ops": ADMIN_ROLES,
                                 "edge": frozenset({"read-write"})},
                       plan.digests, SALT, login_user="ops")
    assert [str(a) for a in again.actions] == ["drop admin"]


def test_admin_named_admin_gets_its_password_and_roles() -> None:
    desired = [user("admin", "strong", *ADMIN_ROLES)]
    assert login_candidates(desired[0]) == [("admin", "strong"), DEFAULT_ADMIN]
    plan = plan_users(desired, {"admin": frozenset({"user-admin"})}, {}, SALT, "admin")
    assert [str(a) for a in plan.actions] == ["set-password admin",
                                              "grant admin data-admin,sys-admin"]


def test_converged_users_plan_nothing_and_changes_are_minimal() -> None:
    desired = [user("ops", "a", *ADMIN_ROLES), user("edge", "e", "read", "write")]
    digests = {u.name: password_digest(SALT, u.name, u.password) for u in desired}
    current = {"ops": ADMIN_ROLES, "edge": frozenset({"read", "write"})}
    assert plan_users(desired, current, digests, SALT, "ops").empty
    changed = [desired[0], user("edge", "e2", "read", "truncate")]
    plan = plan_users(changed, {**current, "old": frozenset({"read"})}, digests, SALT, "ops")
    assert [str(a) for a in plan.actions] == [
        "set-password edge", "grant edge truncate", "revoke edge write", "drop old"]
    assert plan.digests["edge"] == password_digest(SALT, "edge", "e2") != digests["edge"]


def test_the_logged_in_user_is_never_dropped_and_digests_hide_passwords() -> None:
    plan = plan_users([user("ops", "a", *ADMIN_ROLES)], {"admin": frozenset({"user-admin"})},
                      {}, SALT, login_user="admin")
    assert all(a.kind != "drop" for a in plan.actions)
    digest = plan.digests["ops"]
    assert len(digest) == 64 and digest != password_digest(SALT, "ops", "b")
    assert password_digest("other-uid", "ops", "a") != digest
    assert "password='a'" not in repr(plan)


# ------------------------------------------------------------------ the controller's answer


@pytest.mark.parametrize(("spec", "field"), [
    ({"tls": TLS}, "spec.tls is Enterprise-only"),
    ({"edition": "enterprise"}, "spec.featureKeySecretRef is required"),
])
async def test_a_refused_edition_field_is_a_condition_and_nothing_is_created(
        spec: dict[str, Any], field: str) -> None:
    """Stored past admission (an older CRD): the reconcile reports it, creates no pods."""
    from tests.unit.controller.ccworld import NS, World, cc_object

    from aerocdn.controller.runtime import reconcile_once

    world = World.make()
    world.kube.put(cc_object(**spec))
    await reconcile_once(world.ctx, "CacheCluster", NS, "cc")
    cc = world.kube.obj("CacheCluster", NS, "cc") or {}
    degraded = next(c for c in cc["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
    assert field in degraded["message"]
    assert world.kube.kind_of("StatefulSet", NS) == []


# ------------------------------------------------------------------ edges and the exporter log in


def test_edges_of_a_cluster_with_access_control_log_in_with_its_edge_secret() -> None:
    secured = cachecluster({**EE, "accessControl": ACCESS}, name="eu")
    plain = cachecluster({}, name="us-1")
    objs = render_contentedge(contentedge(), {"eu": secured, "us-1": plain})
    validate(objs)
    for dep in by_kind(objs, "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        cm = next(o for o in by_kind(objs, "ConfigMap")
                  if o["metadata"]["name"] == dep["metadata"]["name"])
        edge = EdgeConfig.model_validate(yaml.safe_load(cm["data"]["edge.yaml"]))
        # every region lists both clusters (fail-over routes): both log-ins are everywhere
        assert edge.cache_clusters["eu"].user == "aerocdn-edge"
        assert edge.cache_clusters["eu"].password_file == "/etc/aerocdn/aerospike/eu/password"
        assert edge.cache_clusters["us-1"].user is None
        assert edge.cache_clusters["us-1"].password_file is None
        assert edge.cache_clusters["eu"].seeds == ("eu.cdn.svc:3000",)  # plain port
        logins = [v for v in pod["volumes"] if v["name"].startswith("aerospike-login-")]
        assert logins == [{"name": "aerospike-login-0", "secret": {
            "secretName": "eu-edge", "defaultMode": 0o440,
            "items": [{"key": "password", "path": "password"}]}}]
        containers = {c["name"]: c for c in pod["containers"]}
        assert {"name": "aerospike-login-0", "mountPath": "/etc/aerocdn/aerospike/eu",
                "readOnly": True} in containers["edge"]["volumeMounts"]
        # nginx, which faces clients, never sees the password
        assert not any(m["name"].startswith("aerospike-login")
                       for m in containers["nginx"]["volumeMounts"])
        assert "eu-admin" not in str(pod) and "edge-pw" not in str(pod)


def test_turning_access_control_on_rolls_the_edges() -> None:
    def hash_of(spec: dict[str, Any]) -> str:
        objs = render_contentedge(contentedge(), {"eu": cachecluster(spec, name="eu")})
        return pod_hash(objs, "Deployment", "web-eu")

    assert hash_of({**EE, "accessControl": ACCESS}) != hash_of(EE)


def test_the_exporter_logs_in_with_its_secret_and_only_it_mounts_it() -> None:
    objs = render_cachecluster(cachecluster({**EE, "exporter": {"enabled": True},
                                             "accessControl": {**ACCESS,
                                                               "exporterSecretName": "ex"}}))
    validate(objs)
    cm = next(o for o in by_kind(objs, "ConfigMap") if "ape.toml" in o["data"])
    ape = tomllib.loads(cm["data"]["ape.toml"])
    assert ape["Aerospike"]["user"] == "aerocdn-exporter"
    assert ape["Aerospike"]["password"] == "file:/etc/aerocdn/exporter-login/password"
    assert ape["Aerospike"]["db_port"] == 3000
    (sts,) = by_kind(objs, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    assert volumes(objs)["exporter-login"]["secret"] == {
        "secretName": "ex", "defaultMode": 0o440,
        "items": [{"key": "password", "path": "password"}]}
    containers = {c["name"]: c for c in pod["containers"]}
    assert {"name": "exporter-login", "mountPath": "/etc/aerocdn/exporter-login",
            "readOnly": True} in containers["exporter"]["volumeMounts"]
    assert not any(m["name"] == "exporter-login"
                   for m in containers["aerospike"]["volumeMounts"])


def test_without_access_control_the_exporter_config_has_no_login() -> None:
    objs = render_cachecluster(cachecluster({**EE, "exporter": {"enabled": True}}))
    cm = next(o for o in by_kind(objs, "ConfigMap") if "ape.toml" in o["data"])
    ape = tomllib.loads(cm["data"]["ape.toml"])
    assert "user" not in ape["Aerospike"] and "password" not in ape["Aerospike"]
    assert "exporter-login" not in volumes(objs)


def test_edge_config_needs_user_and_password_file_together() -> None:
    with pytest.raises(ValidationError, match="user and passwordFile go together"):
        CacheClusterRef.model_validate({"seeds": ["eu:3000"], "user": "aerocdn-edge"})


def test_the_edge_tier_reads_its_password_at_connect(tmp_path: Any) -> None:
    password = tmp_path / "password"
    password.write_text("p@ss word")  # used as stored: no trimming
    tier = AerospikeTier("eu", ("eu:3000",), "cache", "web", timeout_ms=100, threads=1,
                         rules_max_age=60, user="aerocdn-edge", password_file=str(password))
    try:
        assert tier.login() == {"user": "aerocdn-edge", "password": "p@ss word"}
        password.write_text("rotated")
        assert tier.login()["password"] == "rotated"
        password.unlink()
        with pytest.raises(TierError, match=f"cache cluster eu: password file {password}"):
            tier.login()
    finally:
        tier._pool.shutdown(wait=True)
    plain = AerospikeTier("us", ("us:3000",), "cache", "web", timeout_ms=100, threads=1,
                          rules_max_age=60)
    try:
        assert plain.login() == {}
    finally:
        plain._pool.shutdown(wait=True)


def test_the_real_client_accepts_user_and_password_in_its_config() -> None:
    """The keys the edge adds: the aerospike client refuses unknown config keys with a
    ParamError; with these it gets as far as connecting (nothing listens on port 1)."""
    aerospike = pytest.importorskip("aerospike")
    config = {"hosts": [("127.0.0.1", 1)], "connect_timeout": 200, "validate_keys": True,
              "user": "aerocdn-edge", "password": "p"}
    with pytest.raises(aerospike.exception.AerospikeError) as err:
        aerospike.client(config).connect()
    assert type(err.value).__name__ not in ("ParamError",), err.value


# ------------------------------------------------------------------ the plan as admin commands


class AdminRecorder:
    """Records the admin calls as the aerospike client's method names and arguments; fails
    the one named in ``fail`` with the client's own exception class."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any) -> None:
            self.calls.append((method, *args))
            if method == self.fail:
                from aerospike import exception as aerr
                raise aerr.InvalidRole(70, "AEROSPIKE_INVALID_ROLE", "x.c", 1, False)
        return call


def test_a_plan_becomes_admin_calls_in_order_and_a_failure_names_the_command() -> None:
    from aerocdn.aerospike.users import UserCommandError, apply_user_plan

    desired = [user("ops", "a", *ADMIN_ROLES), user("edge", "e2", "read")]
    current = {"edge": frozenset({"write"}), "old": frozenset({"read"})}
    plan = plan_users(desired, current, {}, SALT, "admin")
    client = AdminRecorder()
    apply_user_plan(client, plan)
    assert client.calls == [
        ("admin_create_user", "ops", "a", ["data-admin", "sys-admin", "user-admin"]),
        ("admin_set_password", "edge", "e2"),
        ("admin_grant_roles", "edge", ["read"]),
        ("admin_revoke_roles", "edge", ["write"]),
        ("admin_drop_user", "old"),
    ]
    failing = AdminRecorder(fail="admin_grant_roles")
    with pytest.raises(UserCommandError) as err:
        apply_user_plan(failing, plan)
    assert str(err.value) == ("grant edge read: InvalidRole (code 70): "
                              "AEROSPIKE_INVALID_ROLE")
    assert [str(a) for a in err.value.done] == ["create ops data-admin,sys-admin,user-admin",
                                                "set-password edge"]
    assert len(failing.calls) == 3  # stopped at the failing command
    assert "e2" not in str(err.value)


class LoginFactory:
    """Refuses every login but ``accepted`` (user, password) with InvalidCredential, or
    fails every connect with ConnectionError when ``down``."""

    def __init__(self, accepted: tuple[str, str], down: bool = False) -> None:
        self.accepted, self.down = accepted, down
        self.tried: list[tuple[str | None, str | None]] = []

    def __call__(self, config: dict[str, Any]) -> Any:
        from aerospike import exception as aerr

        factory = self

        class Client:
            def connect(self) -> Any:
                factory.tried.append((config.get("user"), config.get("password")))
                if factory.down:
                    raise aerr.ConnectionError(-10, "Failed to connect", "x.c", 1, False)
                if (config.get("user"), config.get("password")) != factory.accepted:
                    raise aerr.InvalidCredential(65, "AEROSPIKE_INVALID_CREDENTIAL",
                                                 "x.c", 1, False)
                return self

            def info_random_node(self, command: str, policy: Any) -> str:
                return "node\tBB9\n"

            def close(self) -> None:
                pass
        return Client()


def test_a_refused_login_falls_back_to_the_default_admin_and_says_who_logged_in() -> None:
    from aerocdn.aerospike.errors import NodeUnreachable

    own = ClientSecurity("ops", "pw")
    default = ClientSecurity(*DEFAULT_ADMIN)
    factory = LoginFactory(accepted=DEFAULT_ADMIN)
    info = AerospikeInfo({"eu-0": HostPort("10.0.0.5", 3000)}, client_factory=factory,
                         security=own, fallback=default)
    assert info.node_id_sync("eu-0") == "BB9"
    assert factory.tried == [("ops", "pw"), DEFAULT_ADMIN]
    assert info.admin_client_sync("eu-0")[1] == "admin"
    # the Secret's admin works: no fallback tried
    factory = LoginFactory(accepted=("ops", "pw"))
    info = AerospikeInfo({"eu-0": HostPort("10.0.0.5", 3000)}, client_factory=factory,
                         security=own, fallback=default)
    assert info.admin_client_sync("eu-0")[1] == "ops" and factory.tried == [("ops", "pw")]
    # an unreachable node is not a refused login: no second try, the node is unreachable
    factory = LoginFactory(accepted=("ops", "pw"), down=True)
    info = AerospikeInfo({"eu-0": HostPort("10.0.0.5", 3000)}, client_factory=factory,
                         security=own, fallback=default)
    with pytest.raises(NodeUnreachable, match="ConnectionError"):
        info.node_id_sync("eu-0")
    assert factory.tried == [("ops", "pw")]
