"""Range slicing (cachePolicy.slices): the pure parts - Range and Content-Range parsing
(RFC 9110 14), If-Range (13.1.5), slice arithmetic and the keys of slice records.

An object served in slices is stored as one *metadata* record (the origin's headers, freshness
and full length; no body) at ``meta_key`` and one record per slice at ``slice_key``.  Both
derive from the request's canonical cache key (``aerocdn.edge.policy.cache_key``), so the L2
records, the origin request and purge all name the same target; a slice's key adds its index
and the object's *version* (a digest of ETag, Last-Modified and length): slices of two versions
can never be combined, whatever order pods store them in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ByteRange:
    """One ``bytes=`` range as asked: ``first-last``, ``first-`` (last None) or a suffix
    ``-n`` (first None, ``suffix`` = n)."""

    first: int | None
    last: int | None
    suffix: int | None = None


_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


def parse_range(value: str | None) -> ByteRange | None:
    """A single byte range, or None when the answer is the whole object: no Range, another
    unit, several ranges or a malformed one (RFC 9110 14.2: a server may ignore Range)."""
    if value is None or len(value) > 200:
        return None
    m = _RANGE.match(value)
    if m is None:
        return None
    a, b = m.group(1), m.group(2)
    if a == "" and b == "":
        return None
    if a == "":
        return ByteRange(None, None, suffix=int(b))
    first = int(a)
    last = int(b) if b else None
    if last is not None and last < first:
        return None  # invalid: ignored (RFC 9110 14.1.1)
    return ByteRange(first, last)


def resolve(r: ByteRange, total: int) -> tuple[int, int] | None:
    """The inclusive byte span a range selects in an object of ``total`` bytes; None when it
    is unsatisfiable (answer 416 with ``Content-Range: bytes */total``)."""
    if r.suffix is not None:
        if r.suffix == 0 or total == 0:
            return None
        return max(0, total - r.suffix), total - 1
    assert r.first is not None
    if r.first >= total:
        return None
    last = total - 1 if r.last is None else min(r.last, total - 1)
    return r.first, last


def content_range(first: int, last: int, total: int) -> str:
    return f"bytes {first}-{last}/{total}"


def unsatisfied_range(total: int) -> str:
    return f"bytes */{total}"


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes first-last/total`` (total None for ``*``); None if malformed."""
    if value is None:
        return None
    m = _CONTENT_RANGE.match(value)
    if m is None:
        return None
    first, last = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if last < first or (total is not None and last >= total):
        return None
    return first, last, total


def unsatisfied_total(value: str | None) -> int | None:
    """The length a 416's ``Content-Range: bytes */N`` states."""
    if value is None:
        return None
    m = _UNSATISFIED.match(value)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- slice arithmetic


def slice_count(total: int, size: int) -> int:
    return (total + size - 1) // size


def slice_span(index: int, size: int, total: int) -> tuple[int, int]:
    """Inclusive bytes of slice ``index`` of an object of ``total`` bytes."""
    first = index * size
    return first, min(first + size, total) - 1


def slices_for(first: int, last: int, size: int) -> range:
    """Indexes of the slices that hold bytes first..last (inclusive)."""
    return range(first // size, last // size + 1)


def slice_request_range(index: int, size: int) -> str:
    """The Range header a slice is fetched with - exactly nginx's ``$slice_range``."""
    first = index * size
    return f"bytes={first}-{first + size - 1}"


def aligned_slice(r: ByteRange | None, size: int) -> int | None:
    """The slice index when the Range is exactly one slice's as nginx's ``slice`` asks for it
    (then nginx keeps the answer under that range); None otherwise."""
    if r is None or r.first is None or r.last is None or r.first % size:
        return None
    if r.last != r.first + size - 1:
        return None
    return r.first // size


# --------------------------------------------------------------------------- validators


def _first(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def validators(headers: Iterable[tuple[str, str]]) -> tuple[str | None, str | None]:
    """(ETag, Last-Modified) of an answer."""
    h = tuple(headers)
    return _first(h, "etag"), _first(h, "last-modified")


def version(headers: Iterable[tuple[str, str]], total: int) -> str | None:
    """What identifies one version of an object across slices: ETag, Last-Modified and
    length.  None without ETag and Last-Modified: slices of such an object cannot be told to
    belong together, so they are not stored (RFC 9111 3.4)."""
    etag, lm = validators(headers)
    if etag is None and lm is None:
        return None
    raw = f"{etag or ''}\n{lm or ''}\n{total}".encode("utf-8", "surrogateescape")
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def if_range_matches(value: str, headers: Iterable[tuple[str, str]]) -> bool:
    """RFC 9110 13.1.5: the Range applies only if If-Range names the current representation
    - a strong ETag equal to the object's (weak ones never match), or an HTTP-date equal to its
    Last-Modified; else the whole object is sent (200)."""
    etag, lm = validators(headers)
    v = value.strip()
    if v.startswith('"') or v.startswith("W/"):
        return etag is not None and not v.startswith("W/") and not etag.startswith("W/") \
            and v == etag.strip()
    return lm is not None and v == lm.strip()


# --------------------------------------------------------------------------- keys


# A record holds its bins within the namespace's max-record-size (1 MiB by default in Aerospike
# 7+/8: ``max-record-size=1048576`` in the 8.1 fixtures), so a slice is stored in parts of at
# most this many bytes: a 1 MiB slice is two records.
PART_MAX_BYTES = 1024 * 1024 - 32 * 1024


def part_sizes(n: int, part_max: int = PART_MAX_BYTES) -> list[int]:
    """Sizes of the records a slice of ``n`` bytes is stored in (as equal as can be)."""
    m = max(1, -(-n // part_max))
    q, r = divmod(n, m)
    return [q + 1 if i < r else q for i in range(m)]


def part_key(key: str, index: int) -> str:
    return f"{key}/{index}"


def meta_key(key: str, size: int) -> str:
    """L2 key of an object's slice metadata (headers, freshness, full length)."""
    return f"{key}#s{size}:meta"


def slice_key(key: str, size: int, index: int, ver: str) -> str:
    """L2 key of one slice of one version of the object."""
    return f"{key}#s{size}:{index}@{ver}"
