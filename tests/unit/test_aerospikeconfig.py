"""spec.aerospikeConfig: free-form aerospike.conf keys merged into the rendered config, with
the operator's keys refused (issue 13, item 1). The same rules run at admission: see
tests/integration/test_admission_aerospikeconfig.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tests.unit.test_render import by_kind, cachecluster, conf_of

from aerocdn.api.aerospikeconfig import OWNED
from aerocdn.api.objects import InputError
from aerocdn.render.cachecluster import render_cachecluster


def section_of(conf: str, header: str) -> str:
    """The body of the first section opened by ``header {`` (nested braces included)."""
    start = conf.index(header + " {")
    depth, i = 0, start
    while True:
        if conf[i] == "{":
            depth += 1
        elif conf[i] == "}":
            depth -= 1
            if depth == 0:
                return conf[start:i]
        i += 1


def keys_of(body: str) -> list[str]:
    return [line.split()[0] for line in body.splitlines()[1:] if line.strip()
            and not line.strip().startswith("#")]


def test_keys_replace_defaults_once_and_add_new_ones() -> None:
    cc = cachecluster({"aerospikeConfig": {
        "service": {"proto-fd-max": 20000, "migrate-threads": 2},
        "logging": {"console": {"migrate": "debug"}},
        "network": {"heartbeat": {"interval": 250}, "fabric": {"channel-bulk-fds": 4}},
        "namespaces": [{"name": "cache", "config": {"nsup-period": 60},
                        "storageEngine": {"defrag-lwm-pct": 40}}],
    }})
    conf = conf_of(render_cachecluster(cc), "eu-config")
    service = section_of(conf, "service")
    assert "proto-fd-max 20000" in service and "proto-fd-max 15000" not in service
    assert keys_of(service).count("proto-fd-max") == 1
    assert "migrate-threads 2" in service
    assert "context any info" in conf and "context migrate debug" in conf
    heartbeat = section_of(conf, "heartbeat")
    assert "interval 250" in heartbeat and keys_of(heartbeat).count("interval") == 1
    assert "mode mesh" in heartbeat  # the operator's keys stay
    assert "channel-bulk-fds 4" in section_of(conf, "fabric")
    namespace = section_of(conf, "namespace cache")
    assert "nsup-period 60" in namespace and keys_of(namespace).count("nsup-period") == 1
    assert "defrag-lwm-pct 40" in section_of(namespace, "storage-engine memory")


def test_rack_keys_merge_over_the_clusters_per_rack() -> None:
    cc = cachecluster({
        "size": 2,
        "aerospikeConfig": {"service": {"proto-fd-max": 20000, "migrate-threads": 2}},
        "racks": [
            {"id": 1, "zone": "a", "aerospikeConfig": {"service": {"migrate-threads": 4}}},
            {"id": 2, "zone": "b"},
        ],
    })
    objects = render_cachecluster(cc)
    one, two = conf_of(objects, "eu-r1-config"), conf_of(objects, "eu-r2-config")
    assert "migrate-threads 4" in one and "migrate-threads 2" not in one
    assert "proto-fd-max 20000" in one
    assert "migrate-threads 2" in two
    # A config change rolls only the rack it changes.
    hashes = {s["metadata"]["name"]: s["spec"]["template"]["metadata"]["annotations"][
        "aerocdn.dev/config-hash"] for s in by_kind(objects, "StatefulSet")}
    base = {s["metadata"]["name"]: s["spec"]["template"]["metadata"]["annotations"][
        "aerocdn.dev/config-hash"] for s in by_kind(render_cachecluster(cachecluster({
            "size": 2, "aerospikeConfig": {"service": {"proto-fd-max": 20000,
                                                       "migrate-threads": 2}},
            "racks": [{"id": 1, "zone": "a"}, {"id": 2, "zone": "b"}]})), "StatefulSet")}
    assert hashes["eu-r1"] != base["eu-r1"] and hashes["eu-r2"] == base["eu-r2"]


OWNED_CASES = [
    (section, key)
    for section, keys in OWNED.items()
    for key in keys
]


def placed(section: str, key: str, value: Any = 1) -> dict[str, Any]:
    if section == "service":
        return {"service": {key: value}}
    if section.startswith("network."):
        return {"network": {section.split(".")[1]: {key: value}}}
    if section == "namespace":
        return {"namespaces": [{"name": "cache", "config": {key: value}}]}
    return {"namespaces": [{"name": "cache", "storageEngine": {key: value}}]}


@pytest.mark.parametrize(("section", "key"), OWNED_CASES)
def test_keys_the_operator_owns_are_refused_naming_the_path(section: str, key: str) -> None:
    with pytest.raises(InputError) as e:
        cachecluster({"aerospikeConfig": placed(section, key)})
    assert f".{key} is set by the operator" in str(e.value)


@pytest.mark.parametrize("value", ["1\n}\nnamespace evil {", "a b", "x#y", "{", "", "a" * 300])
def test_values_cannot_break_out_of_their_line(value: str) -> None:
    with pytest.raises(InputError, match="one token"):
        cachecluster({"aerospikeConfig": {"service": {"migrate-threads": value}}})


@pytest.mark.parametrize("key", ["Proto", "a b", "-x", "x}", "#c"])
def test_keys_are_conf_names(key: str) -> None:
    with pytest.raises(InputError, match=r"keys are aerospike\.conf names"):
        cachecluster({"aerospikeConfig": {"service": {key: 1}}})


def test_booleans_are_refused_like_the_crd_refuses_them() -> None:
    """The CRD's int-or-string refuses true/false; so must the model (write "true")."""
    with pytest.raises(InputError):
        cachecluster({"aerospikeConfig": {"service": {"enable-health-check": True}}})
    cachecluster({"aerospikeConfig": {"service": {"enable-health-check": "true"}}})


def test_namespaces_must_be_declared_and_sinks_are_console() -> None:
    with pytest.raises(InputError, match=re.escape(
            "aerospikeConfig.namespaces[0].name: 'other' is not a namespace")):
        cachecluster({"aerospikeConfig": {"namespaces": [{"name": "other"}]}})
    with pytest.raises(InputError, match=re.escape("racks[0].aerospikeConfig.namespaces")):
        cachecluster({"racks": [{"id": 1, "zone": "a", "aerospikeConfig": {
            "namespaces": [{"name": "other"}]}}]})
    # Only the console sink exists (files would go to the read-only root).
    with pytest.raises(InputError, match=r"logging\./var/log/a\.log"):
        cachecluster({"aerospikeConfig": {"logging": {"/var/log/a.log": {"any": "info"}}}})
    with pytest.raises(InputError, match=r"logging\.console\.any"):
        cachecluster({"aerospikeConfig": {"logging": {"console": {"any": "loud"}}}})


def test_without_aerospike_config_nothing_changes() -> None:
    assert conf_of(render_cachecluster(cachecluster({})), "eu-config") == conf_of(
        render_cachecluster(cachecluster({"aerospikeConfig": {}})), "eu-config")
