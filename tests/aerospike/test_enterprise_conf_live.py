"""The Enterprise-only stanzas render/ writes, shown to a Community Edition asd.

No Enterprise server (nor feature key) is at hand, so these configs cannot be started. What a
Community asd proves: it knows each stanza as an Enterprise keyword (it stops with
``'<key>' is enterprise-only`` on exactly that line, not with an unknown-name or syntax error),
which is why CacheCluster refuses these fields on Community Edition. The Community configs
themselves start in test_rendered_conf_live.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.aerospike.test_rendered_conf_live import asd, pod_conf  # noqa: F401 (fixture)

from aerocdn.api import CacheCluster, parse_object

pytestmark = pytest.mark.aerospike

EE = {"edition": "enterprise", "featureKeySecretRef": {"name": "aerospike-features"}}
FEATURE_KEY_LINE = "    feature-key-file /etc/aerocdn/feature-key/features.conf\n"


def cachecluster(spec: dict[str, Any]) -> CacheCluster:
    obj = parse_object({"apiVersion": "aerocdn.dev/v1alpha1", "kind": "CacheCluster",
                        "metadata": {"name": "eu", "namespace": "cdn"},
                        "spec": {"region": "eu", "namespaces": [
                            {"name": "cache", "storage": {"size": "512Mi"}}], **spec}})
    assert isinstance(obj, CacheCluster)
    return obj


@pytest.mark.parametrize(("spec", "keyword"), [
    (EE, "feature-key-file"),
    ({**EE, "tls": {"secretName": "eu-tls", "fabric": True}}, "tls"),
    ({**EE, "accessControl": {"adminSecretRef": {"name": "eu-admin"},
                               "edgeSecretName": "eu-edge"}}, "security"),
], ids=["feature-key", "tls", "security"])
def test_community_asd_names_each_stanza_enterprise_only(
        asd: str, tmp_path: Path, spec: dict[str, Any], keyword: str) -> None:  # noqa: F811
    conf, _ = pod_conf(cachecluster(spec), tmp_path)
    if keyword != "feature-key-file":  # the feature key comes first: show the stanza after it
        conf = conf.replace(FEATURE_KEY_LINE, "")
    path = tmp_path / "aerospike.conf"
    path.write_text(conf)
    line = next(i for i, text in enumerate(conf.splitlines(), 1)
                if text.strip().split(" ")[0] == keyword)
    done = subprocess.run([asd, "--foreground", "--config-file", str(path)],
                          capture_output=True, text=True, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-2000:]
    assert f"line {line} :: '{keyword}' is enterprise-only" in out, out[-2000:]
