"""Tags (surrogate keys) in the edge's parts: parsing the origin's header, storing tags with
the object (memory and Aerospike bins), tag rules, and the L1 index's byte budget."""

from __future__ import annotations

from aerocdn.edge.config import CachePolicyConfig
from aerocdn.edge.policy import MAX_TAGS, PurgeRules, StoredObject, parse_tags, store_headers
from aerocdn.edge.purge import L1Entry, L1Index
from aerocdn.edge.tiers import MemoryTier, entry_size, from_bins, to_bins


def obj(url: str, tags: tuple[str, ...] = (), stored_at: float = 100.0) -> StoredObject:
    return StoredObject(status=200, headers=(("Content-Type", "text/plain"),), body=b"x",
                        url=url, stored_at=stored_at, fresh_until=stored_at + 60, tags=tags)


def test_tags_are_read_from_the_configured_header_by_spaces_or_commas() -> None:
    headers = (("Surrogate-Key", "a  b,c"), ("surrogate-key", "b d"), ("Cache-Tag", "z"))
    assert parse_tags(headers, "Surrogate-Key") == ("a", "b", "c", "d")
    assert parse_tags(headers, "cache-tag") == ("z",)
    assert parse_tags((("Surrogate-Key", " ".join(f"t{i}" for i in range(200))),),
                      "surrogate-key") == tuple(f"t{i}" for i in range(MAX_TAGS))
    assert parse_tags((("Surrogate-Key", "ok " + "x" * 257 + " caf\u00e9"),),
                      "surrogate-key") == ("ok",)


def test_the_tag_headers_are_never_stored_or_passed_on() -> None:
    drop = CachePolicyConfig(tag_header="X-Tags").tag_headers
    assert drop == {"x-tags", "surrogate-key", "cache-tag"}
    kept = store_headers((("X-Tags", "a"), ("Surrogate-Key", "b"), ("Cache-Tag", "c"),
                          ("ETag", '"1"')), drop)
    assert kept == (("ETag", '"1"'),)


async def test_memory_tier_purges_by_tag_and_counts_tags_in_its_budget() -> None:
    tier = MemoryTier(10**6)
    await tier.put("k1", obj("h/a", ("t1", "t2")), 60)
    await tier.put("k2", obj("h/b", ("t2",)), 60)
    await tier.put("k3", obj("h/c"), 60)
    assert await tier.purge_tag("t2", 200.0) == 2
    assert [await tier.get(k) is None for k in ("k1", "k2", "k3")] == [True, True, False]
    assert entry_size(obj("h/a", ("t" * 100,))) - entry_size(obj("h/a")) >= 100


def test_tags_travel_in_the_aerospike_bins_and_tag_rules_hide_older_objects() -> None:
    o = obj("h/a", ("t1", "t2"))
    assert from_bins(to_bins(o)) == o
    assert "tg" not in to_bins(obj("h/a"))  # untagged objects: no bin
    rules = PurgeRules(tags={"t2": 150.0})
    assert rules.purged("h/a", 100.0, ("t1", "t2"))
    assert not rules.purged("h/a", 151.0, ("t1", "t2"))  # stored after the purge
    assert not rules.purged("h/a", 100.0, ("t1",))
    assert rules.prune(151.0).tags == {}


def test_the_l1_index_counts_tags_against_its_byte_budget() -> None:
    plain = L1Entry("/a", "", (), 0.0)
    tagged = L1Entry("/a", "", (), 0.0, ("t" * 500,))
    assert L1Index.entry_bytes("h/a", "()", tagged) - L1Index.entry_bytes(
        "h/a", "()", plain) >= 500
    index = L1Index(max_bytes=L1Index.entry_bytes("h/a", "()", plain) + 10)
    assert index.record("h/a", "()", plain)
    # the same entry again with tags it cannot afford: refused, budget kept
    assert not index.record("h/a", "()", tagged)
    assert index.bytes <= index.max_bytes and index.overflowed == 1
    roomy = L1Index()
    roomy.record("h/a", "()", tagged)
    roomy.record("h/b", "()", L1Entry("/b", "", (), 0.0, ("u",)))
    assert [u for u, _, _ in roomy.tagged("t" * 500)] == ["h/a"]
    roomy.drop_entries(roomy.tagged("u"))
    assert list(roomy.entries) == ["h/a"] and roomy.size == 1
    assert roomy.bytes == L1Index.entry_bytes("h/a", "()", tagged)


# --- soft purge -------------------------------------------------------------------------------

def test_soft_rules_expire_objects_stored_before_them_and_hard_rules_still_win() -> None:
    from aerocdn.edge.policy import soft_expired

    rules = PurgeRules(soft_prefixes={"h/img/": 150.0}, soft_tags={"t": 120.0})
    assert rules.expired_at("h/img/a", 100.0) == 150.0
    assert rules.expired_at("h/img/a", 100.0, ("t",)) == 120.0  # the earliest that applies
    assert rules.expired_at("h/img/a", 151.0) is None  # stored after it
    assert not rules.purged("h/img/a", 100.0, ("t",))  # soft: not absent
    assert rules.prune(151.0) == PurgeRules()
    o = obj("h/img/a", stored_at=100.0)  # fresh until 160
    assert soft_expired(o, 150.0).fresh_until == 150.0
    assert soft_expired(o, 150.0).state(155.0) != "fresh"
    assert soft_expired(o, 170.0) is o  # already expired then: unchanged


async def test_memory_tier_soft_purge_keeps_the_object_but_expired() -> None:
    tier = MemoryTier(10**6, clock=lambda: 130.0)
    await tier.put("k1", obj("h/a", ("t",)), 600)
    await tier.put("k2", obj("h/b"), 600)
    assert await tier.purge("h/a", False, 130.0, soft=True) == 1
    kept = await tier.get("k1")
    assert isinstance(kept, StoredObject) and kept.fresh_until == 130.0 and kept.body == b"x"
    assert await tier.purge_tag("t", 140.0, soft=True) == 1
    untouched = await tier.get("k2")
    assert isinstance(untouched, StoredObject) and untouched.fresh_until == 160.0
