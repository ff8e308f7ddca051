"""Nothing the CRD admits may fail a later validation: every field constraint of the pydantic
models is in the generated CRD schema, checked with a value that breaks it (the same cases run
against a real apiserver in tests/integration/test_crd_parity.py, which also evaluates CEL)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.api_walk import BASE, CROSS_FIELD, Case, constraint_cases

from aerocdn.api import InputError, parse_object
from aerocdn.api.crd import all_crds
from aerocdn.render.contentedge import render_contentedge

CRDS = {crd["spec"]["names"]["kind"]: crd for crd in all_crds().values()}
CASES = constraint_cases()


def schema_errors(obj: dict[str, Any]) -> list[str]:
    schema = CRDS[obj["kind"]]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft4Validator(schema)
    return [e.message for e in validator.iter_errors(obj)]


def test_the_walk_covers_the_constraints_that_were_missed() -> None:
    paths = {c.path for c in CASES}
    assert "spec.cachePolicy.cacheKey.queryParams[0]" in paths
    assert "spec.cachePolicy.cacheKey.varyHeaders[0]" in paths
    assert "spec.routing.latenciesMs.eu-west.eu-west" in paths
    assert len(CASES) > 50


@pytest.mark.parametrize("kind", sorted(BASE))
def test_base_objects_are_valid(kind: str) -> None:
    parse_object(BASE[kind])
    assert schema_errors(BASE[kind]) == []


@pytest.mark.parametrize("case", CASES, ids=str)
def test_pydantic_and_crd_schema_refuse_the_same_value(case: Case) -> None:
    with pytest.raises(InputError):
        parse_object(case.obj)
    assert schema_errors(case.obj), f"the CRD admits what the models refuse: {case}"


@pytest.mark.parametrize("case", CROSS_FIELD, ids=str)
def test_cross_field_rules_refused_by_pydantic_and_carried_by_the_crd(case: Case) -> None:
    with pytest.raises(InputError):
        parse_object(case.obj)
    # CEL is evaluated by the apiserver (integration tier); here: the CRD carries a rule
    # naming the field, or (uniqueness) a map/set list type on it
    leaf = case.path.rsplit(".", 1)[-1].split("[")[0]
    rules, list_types = _rules(CRDS[case.kind])
    assert any(leaf in r for r in rules) or leaf in list_types, (leaf, rules)


def _rules(node: Any, name: str = "") -> tuple[list[str], set[str]]:
    rules: list[str] = []
    lists: set[str] = set()
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations", []):
            rules.append(rule["rule"] + " " + rule.get("fieldPath", ""))
        if node.get("x-kubernetes-list-type") in ("map", "set"):
            lists.add(name)
        for key, value in node.items():
            r, ls = _rules(value, key if key not in ("properties", "items") else name)
            rules += r
            lists |= ls
    elif isinstance(node, list):
        for value in node:
            r, ls = _rules(value, name)
            rules += r
            lists |= ls
    return rules, lists


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=12),
                min_size=1, max_size=3),
       st.lists(st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=12),
                min_size=1, max_size=3))
def test_cache_keys_the_crd_admits_render(params: list[str], headers: list[str]) -> None:
    """The seen case: queryParams ["a-b"] passed the CRD and parse_object, then failed in
    render (the edge config refuses names nginx variables cannot hold)."""
    obj = {**BASE["ContentEdge"], "spec": {**BASE["ContentEdge"]["spec"], "cachePolicy": {
        "cacheKey": {"queryParams": params, "varyHeaders": headers}}}}
    if schema_errors(obj):
        return
    ce = parse_object(obj)
    render_contentedge(ce)  # type: ignore[arg-type]
