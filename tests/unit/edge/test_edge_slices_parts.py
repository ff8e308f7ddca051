"""Range slicing, the pure parts: Range / Content-Range / If-Range, slice arithmetic, keys,
the records' round trip through the Aerospike bins, the API bounds and the rendered nginx."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from aerocdn.api import ContentEdge, InputError, parse_object
from aerocdn.api.crd import contentedge_crd
from aerocdn.edge.config import EdgeConfig
from aerocdn.edge.policy import StoredObject
from aerocdn.edge.slices import (
    ByteRange,
    aligned_slice,
    content_range,
    if_range_matches,
    meta_key,
    parse_content_range,
    parse_range,
    resolve,
    slice_count,
    slice_key,
    slice_request_range,
    slice_span,
    slices_for,
    unsatisfied_range,
    unsatisfied_total,
    version,
)
from aerocdn.edge.tiers import from_bins, to_bins
from aerocdn.render.contentedge import render_contentedge
from aerocdn.render.nginx import render_nginx_conf

MIB = 2**20


# ----------------------------------------------------------------------------- Range


@pytest.mark.parametrize("value, want", [
    ("bytes=0-99", ByteRange(0, 99)),
    ("bytes=100-", ByteRange(100, None)),
    ("bytes=-500", ByteRange(None, None, suffix=500)),
    ("BYTES = 5 - 9", ByteRange(5, 9)),
    ("bytes=9-5", None),  # last before first: invalid, ignored (RFC 9110 14.1.1)
    ("bytes=0-1,5-6", None),  # several ranges: the whole object
    ("items=0-1", None),
    ("bytes=-", None),
    ("bytes=a-b", None),
    ("", None),
    (None, None),
    ("bytes=0-" + "9" * 300, None),  # absurdly long: ignored, not parsed
])
def test_parse_range(value: str | None, want: ByteRange | None) -> None:
    assert parse_range(value) == want


@pytest.mark.parametrize("r, total, want", [
    (ByteRange(0, 99), 1000, (0, 99)),
    (ByteRange(900, 2000), 1000, (900, 999)),  # clamped to the end
    (ByteRange(100, None), 1000, (100, 999)),
    (ByteRange(1000, None), 1000, None),  # starts past the end: 416
    (ByteRange(None, None, suffix=10), 1000, (990, 999)),
    (ByteRange(None, None, suffix=5000), 1000, (0, 999)),  # longer than the object
    (ByteRange(None, None, suffix=0), 1000, None),
    (ByteRange(0, 0), 0, None),
])
def test_resolve(r: ByteRange, total: int, want: tuple[int, int] | None) -> None:
    assert resolve(r, total) == want


def test_content_range_round_trip() -> None:
    assert content_range(0, 99, 1000) == "bytes 0-99/1000"
    assert parse_content_range("bytes 0-99/1000") == (0, 99, 1000)
    assert parse_content_range("bytes 0-99/*") == (0, 99, None)
    assert parse_content_range("bytes 99-0/1000") is None
    assert parse_content_range("bytes 0-1000/1000") is None  # past the length it states
    assert parse_content_range("bytes */1000") is None
    assert parse_content_range(None) is None
    assert unsatisfied_range(1000) == "bytes */1000"
    assert unsatisfied_total("bytes */1000") == 1000
    assert unsatisfied_total("bytes 0-1/2") is None


# ----------------------------------------------------------------------------- slices


def test_slice_arithmetic() -> None:
    size = MIB
    assert slice_count(0, size) == 0
    assert slice_count(1, size) == 1
    assert slice_count(size, size) == 1
    assert slice_count(size + 1, size) == 2
    assert slice_count(200 * MIB, size) == 200
    assert slice_span(0, size, 10) == (0, 9)  # a short object is one short slice
    assert slice_span(1, size, 3 * MIB - 1) == (MIB, 2 * MIB - 1)
    assert slice_span(2, size, 3 * MIB - 1) == (2 * MIB, 3 * MIB - 2)
    assert list(slices_for(0, 0, size)) == [0]
    assert list(slices_for(MIB - 1, MIB, size)) == [0, 1]  # across one boundary
    assert list(slices_for(MIB, 3 * MIB - 1, size)) == [1, 2]


def test_a_slice_is_fetched_with_nginx_slice_range() -> None:
    # nginx's $slice_range for slice 2 of 1m slices is "bytes=2097152-3145727"
    assert slice_request_range(2, MIB) == "bytes=2097152-3145727"
    assert aligned_slice(parse_range("bytes=2097152-3145727"), MIB) == 2
    assert aligned_slice(parse_range("bytes=0-1048575"), MIB) == 0
    assert aligned_slice(parse_range("bytes=1-1048576"), MIB) is None
    assert aligned_slice(parse_range("bytes=0-"), MIB) is None
    assert aligned_slice(parse_range("bytes=-1048576"), MIB) is None
    assert aligned_slice(None, MIB) is None


# ----------------------------------------------------------------------------- validators


def test_version_names_validators_and_length() -> None:
    a = version((("ETag", '"1"'),), 100)
    assert a is not None and a == version((("etag", '"1"'),), 100)
    assert a != version((("ETag", '"2"'),), 100)
    assert a != version((("ETag", '"1"'),), 101)  # same tag, other length: another object
    lm = (("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"),)
    assert version(lm, 100) is not None and version(lm, 100) != a
    assert version((("Content-Type", "video/mp4"),), 100) is None  # nothing to check with


def test_if_range() -> None:
    h = (("ETag", '"abc"'), ("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"))
    assert if_range_matches('"abc"', h)
    assert not if_range_matches('"abd"', h)
    assert not if_range_matches('W/"abc"', h)  # weak: never (RFC 9110 13.1.5)
    assert not if_range_matches('"abc"', (("ETag", 'W/"abc"'),))
    assert if_range_matches("Tue, 01 Dec 2026 10:00:00 GMT", h)
    assert not if_range_matches("Tue, 01 Dec 2026 10:00:01 GMT", h)
    assert not if_range_matches("Tue, 01 Dec 2026 10:00:00 GMT", (("ETag", '"abc"'),))


def test_slice_keys_derive_from_the_cache_key() -> None:
    key = "cdn.example.test/movie.mp4|gzip"
    assert meta_key(key, MIB).startswith(key)
    assert slice_key(key, MIB, 3, "v1").startswith(key)
    keys = {meta_key(key, MIB), slice_key(key, MIB, 3, "v1"), slice_key(key, MIB, 3, "v2"),
            slice_key(key, MIB, 4, "v1"), slice_key(key, 2 * MIB, 3, "v1"), key}
    assert len(keys) == 6  # nothing collides: index, version and size all count


def test_a_slice_record_keeps_its_length_through_the_aerospike_bins() -> None:
    obj = StoredObject(status=206, headers=(), body=b"x" * 10, url="h/p", stored_at=1.0,
                       fresh_until=2.0, slice_total=12345)
    back = from_bins(to_bins(obj))
    assert isinstance(back, StoredObject) and back.slice_total == 12345
    whole = StoredObject(status=200, headers=(), body=b"", url="h/p", stored_at=1.0,
                         fresh_until=2.0)
    assert "tot" not in to_bins(whole)
    back = from_bins(to_bins(whole))
    assert isinstance(back, StoredObject) and back.slice_total == -1


# ----------------------------------------------------------------------------- API, render


def ce(slices: dict[str, Any] | None) -> dict[str, Any]:
    policy = {"slices": slices} if slices is not None else {}
    return {"apiVersion": "aerocdn.dev/v1alpha1", "kind": "ContentEdge",
            "metadata": {"name": "web", "namespace": "cdn"},
            "spec": {"hosts": ["www.example.com"], "origin": {"url": "http://o.example"},
                     "regions": [{"name": "eu"}], "cachePolicy": policy}}


def test_slices_are_off_by_default_and_1_mib_when_on() -> None:
    off = parse_object(ce(None))
    on = parse_object(ce({"enabled": True}))
    assert isinstance(off, ContentEdge) and isinstance(on, ContentEdge)
    assert not off.spec.cache_policy.slices.enabled
    assert on.spec.cache_policy.slices.size_bytes == MIB


@pytest.mark.parametrize("size", [0, 65535, 16 * MIB + 1])
def test_slice_sizes_out_of_bounds_are_refused_naming_the_field(size: int) -> None:
    with pytest.raises(InputError) as exc:
        parse_object(ce({"enabled": True, "sizeBytes": size}), "f.yaml")
    text = " ".join(str(p) for p in exc.value.problems)
    assert "slices.sizeBytes" in text


def test_the_crd_carries_the_same_bounds_as_the_edge() -> None:
    crd = contentedge_crd()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    prop = schema["properties"]["spec"]["properties"]["cachePolicy"]["properties"]["slices"]
    size = prop["properties"]["sizeBytes"]
    assert (size["minimum"], size["maximum"], size["default"]) == (64 * 1024, 16 * MIB, MIB)
    for ok in (size["minimum"], size["maximum"]):  # what the CRD admits the edge takes
        EdgeConfig.model_validate({"contentEdge": "w", "region": "eu", "hosts": ["a.b"],
                                   "origin": {"url": "http://o"},
                                   "cachePolicy": {"slices": {"enabled": True,
                                                              "sizeBytes": ok}}})


def test_a_sliced_contentedge_renders_nginx_slice_and_its_keys() -> None:
    obj = parse_object(ce({"enabled": True, "sizeBytes": 2 * MIB}))
    assert isinstance(obj, ContentEdge)
    cm = next(o for o in render_contentedge(obj) if o["kind"] == "ConfigMap")
    edge = yaml.safe_load(cm["data"]["edge.yaml"])
    assert edge["cachePolicy"]["slices"] == {"enabled": True, "sizeBytes": 2 * MIB}
    conf = cm["data"]["nginx.conf"]
    assert "slice 2097152;" in conf
    assert "proxy_set_header Range $slice_range;" in conf
    assert "proxy_cache_valid 206 " in conf
    assert 'proxy_cache_key "$host$request_uri|$aerocdn_accept_encoding|$slice_range";' in conf
    assert 'proxy_cache_purge aerocdn "$host$aerocdn_purge_target' \
        '|$aerocdn_accept_encoding|$http_x_aerocdn_slice";' in conf


def test_without_slices_nginx_is_unchanged() -> None:
    cfg = EdgeConfig.model_validate({"contentEdge": "w", "region": "eu", "hosts": ["a.b"],
                                     "origin": {"url": "http://o"}})
    conf = render_nginx_conf(cfg)
    assert "slice" not in conf.replace("slices", "")
    assert 'proxy_cache_key "$host$request_uri|$aerocdn_accept_encoding";' in conf


def test_a_slice_is_stored_in_parts_that_fit_aerospikes_default_record_size() -> None:
    from aerocdn.edge.slices import PART_MAX_BYTES, part_key, part_sizes

    # Aerospike 8.1's default max-record-size (the fixtures' namespace config) also holds the
    # record's other bins: a whole 1 MiB slice would be refused (RecordTooBig)
    assert PART_MAX_BYTES < 1048576
    assert part_sizes(1000) == [1000]
    assert part_sizes(0) == [0]
    assert part_sizes(PART_MAX_BYTES) == [PART_MAX_BYTES]
    assert part_sizes(MIB) == [MIB // 2, MIB // 2]
    assert part_sizes(MIB + 1) == [MIB // 2 + 1, MIB // 2]
    for n in (16 * MIB, 3 * MIB + 7, PART_MAX_BYTES + 1):
        sizes = part_sizes(n)
        assert sum(sizes) == n and max(sizes) <= PART_MAX_BYTES and max(sizes) - min(sizes) <= 1
    assert part_key("k", 0) != part_key("k", 1)
