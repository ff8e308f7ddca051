"""The ContentEdge fields of issue 11 (rate limits, TLS, header/cookie policy, network
policy) are accepted and refused identically by the real apiserver (CRD schema + CEL
isIP/isCIDR) and by the pydantic models: nothing the CRD admits fails later."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from tests.integration.operator_harness import Kubectl
from tests.integration.test_install import kubectl  # noqa: F401

from aerocdn.api.contentedge import ContentEdgeSpec

BASE = {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
        "metadata": {"name": "crdcheck", "namespace": "default"},
        "spec": {"hosts": ["a.example.com", "*.img.example.com"],
                 "origin": {"url": "https://o.example.com"}, "regions": [{"name": "eu"}]}}


@pytest.mark.parametrize("extra", [
    {"rateLimits": {"requestsPerSecond": 5, "trustedProxies": ["10.0.0.0/8", "192.168.1.7",
                                                                "2001:db8::/32", "::1"]}},
    {"rateLimits": {"trustedProxies": ["10.0.0.0/33"]}},
    {"rateLimits": {"trustedProxies": ["300.1.1.1"]}},
    {"rateLimits": {"trustedProxies": ["1.2.3.4/024"]}},
    {"rateLimits": {"trustedProxies": ["::ffff:1.2.3.4"]}},
    {"rateLimits": {"trustedProxies": ["1.2.3.4/24"]}},
    {"rateLimits": {"trustedProxies": ["::ffff:1.2.3.4/128"]}},
    {"rateLimits": {"trustedProxies": ["::ffff:0:0/96"]}},
    {"rateLimits": {"trustedProxies": ["::/0", "0.0.0.0/0"]}},
    {"rateLimits": {"trustedProxies": ["01.2.3.4"]}},
    {"rateLimits": {"trustedProxies": ["1.2.3"]}},
    {"rateLimits": {"trustedProxies": ["fe80::1"]}},
    {"tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}]},
    {"tls": [{"hosts": ["b.example.com"], "secretName": "a-tls"}]},
    {"origin": {"url": "https://o.example.com", "forwardHeaders": ["X Bad"]}},
    {"cachePolicy": {"cookies": "forward", "cacheKey": {"queryParams": ["page"]}}},
    {"networkPolicy": {"enabled": True, "metricsNamespaces": ["monitoring"]}},
])
def test_apiserver_and_pydantic_agree_on_the_edge_fields(
        kubectl: Kubectl, extra: dict[str, Any]) -> None:  # noqa: F811
    obj = copy.deepcopy(BASE)
    obj["spec"].update(extra)
    out = kubectl.run("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(obj),
                      check=False)
    crd_ok = out.returncode == 0
    try:
        ContentEdgeSpec.model_validate(obj["spec"])
        api_ok = True
    except ValueError:
        api_ok = False
    assert crd_ok == api_ok, out.stderr
