"""Cache-Control parsing (aerocdn.edge.cachecontrol): what the shared-cache policy relies on."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aerocdn.edge.cachecontrol import DELTA_SECONDS_MAX, CacheControl, parse_cache_control
from aerocdn.edge.config import CachePolicyConfig
from aerocdn.edge.policy import decide_storage


def cc(*lines: str) -> CacheControl:
    return parse_cache_control(lines)


def test_no_field_line_is_no_directive() -> None:
    assert cc() == CacheControl()


# ----------------------------------------------------------------------------- with/without values


def test_flags_take_no_value_and_seconds_need_one() -> None:
    c = cc("no-store, public, must-revalidate, proxy-revalidate, max-age=60, s-maxage=30")
    assert (c.no_store, c.public, c.must_revalidate, c.proxy_revalidate) == (True,) * 4
    assert (c.max_age, c.s_maxage) == (60, 30)
    for bad in ("no-store=1", "public=yes", 'must-revalidate=""', "max-age", "s-maxage="):
        with pytest.raises(ValueError):
            cc(bad)


def test_no_cache_and_private_are_bare_or_name_fields() -> None:
    assert cc("no-cache, private") == CacheControl(no_cache=True, private=True)
    assert cc('no-cache="Set-Cookie, X-Token"').no_cache == ("set-cookie", "x-token")
    assert cc("private=x-user").private == ("x-user",)  # token form: accepted
    assert cc("max-age=5").no_cache is False and cc("max-age=5").private is False


def test_unknown_directives_are_ignored_with_or_without_a_value() -> None:
    assert cc('immutable, stale-while-revalidate=30, x-ext="a, b", max-age=5') == CacheControl(
        max_age=5)


# ----------------------------------------------------------------------------- quoted strings


def test_quoted_strings_hold_commas_and_escapes() -> None:
    assert cc('x="a, b=c", no-store').no_store is True
    assert cc(r'x="say \"hi\"", public').public is True
    assert cc('no-cache="a,b", max-age=0') == CacheControl(max_age=0, no_cache=("a", "b"))
    assert cc('max-age=60, private="x"') == CacheControl(max_age=60, private=("x",))


@pytest.mark.parametrize("bad", [
    'x="open', 'x="a"b', 'max-age="60"', 'private=""', 'no-cache="a,,b"', 'x="a\\',
    'x="\x00"',
])
def test_bad_quoted_strings_and_quoted_seconds_are_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        cc(bad)


# ----------------------------------------------------------------------------- case


def test_directive_names_compare_case_insensitively() -> None:
    assert cc("No-Store, MAX-AGE=60, Private") == CacheControl(max_age=60, no_store=True,
                                                                private=True)
    assert cc('NO-CACHE="Set-Cookie"').no_cache == ("set-cookie",)


# ----------------------------------------------------------------------------- duplicates


def test_a_repeated_max_age_keeps_the_first_value_across_field_lines() -> None:
    assert cc("max-age=10, max-age=20").max_age == 10
    assert cc("max-age=0", "max-age=3600").max_age == 0
    assert cc("s-maxage=5", "s-maxage=9").s_maxage == 5


def test_repeated_field_lists_add_up_and_bare_wins() -> None:
    assert cc('no-cache="a"', 'no-cache="b, a"').no_cache == ("a", "b")
    assert cc('private="a"', "private").private is True
    assert cc("private", 'private="a"').private is True
    assert cc("public, public").public is True


# ----------------------------------------------------------------------------- list syntax


@pytest.mark.parametrize("line,want", [
    ("", CacheControl()),
    (" ,\t, ", CacheControl()),
    ("max-age=60,", CacheControl(max_age=60)),
    (", ,public", CacheControl(public=True)),
    ("\t max-age=60 \t", CacheControl(max_age=60)),
    ("max-age=60 , public", CacheControl(max_age=60, public=True)),
])
def test_empty_list_elements_and_whitespace_around_them_are_accepted(
        line: str, want: CacheControl) -> None:
    assert cc(line) == want


@pytest.mark.parametrize("bad", [
    "max-age =60", "max-age= 60", "max-age=60;", "ma x-age=60", "=60", "é", "foo=bar baz",
    "max-age=1.5", "max-age=+5", "max-age=-1", "max-age=0x10", "max-age=٣",
    "public no-store",
])
def test_anything_else_is_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        cc(bad)


def test_huge_delta_seconds_are_capped() -> None:
    assert cc("max-age=99999999999999999999").max_age == DELTA_SECONDS_MAX


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list(' \t,="\\abmx-0159AéZ;')), max_size=30),
                max_size=3))
def test_any_text_parses_or_raises_value_error(lines: list[str]) -> None:
    try:
        c = parse_cache_control(lines)
    except ValueError:
        return
    assert c.max_age is None or 0 <= c.max_age <= DELTA_SECONDS_MAX
    for names in (c.no_cache, c.private):
        assert isinstance(names, bool) or (names and all(n == n.lower() for n in names))


# ----------------------------------------------------------------------------- in the policy


def _store(value: str) -> tuple[bool, str]:
    d = decide_storage("GET", {}, 200, (("Cache-Control", value),), CachePolicyConfig(), 0.0)
    return d.store, d.reason


def test_the_policy_honours_directives_in_any_case_and_refuses_malformed_ones() -> None:
    assert _store("No-Store") == (False, "response says no-store")
    assert _store("PRIVATE, max-age=60") == (False, "response is private")
    assert _store("max-age=60, max-age=x") == (False, "malformed Cache-Control")
    assert _store("Max-Age=60,") == (True, "storable")
