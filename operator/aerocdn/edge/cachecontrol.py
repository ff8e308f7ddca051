"""Cache-Control (RFC 9111 5.2) as a shared cache reads it: the directives the policy uses.

Grammar (RFC 9110 5.6): a comma-separated list of ``token [ "=" ( token / quoted-string ) ]``
over any number of field lines; empty list elements are skipped (5.6.1: a recipient MUST
accept them); quoted strings may hold commas and backslash escapes.  Directive names compare
case-insensitively (RFC 9111 5.2).  Per directive:

- ``max-age``, ``s-maxage``: delta-seconds, token form only (RFC 9111 1.2.2, 5.2: a sender MUST
  NOT quote them), capped at 2147483648; a repeated one keeps its first value (RFC 9111 4.2.1);
- ``no-store``, ``public``, ``must-revalidate``, ``proxy-revalidate``: no argument;
- ``no-cache``, ``private``: bare (True) or a list of field names (lower case); bare wins over
  a list, lists add up;
- anything else is ignored (its syntax is still checked).

What does not fit raises ValueError: the caller treats the whole header as malformed (a
response is then not stored: RFC 9111 4.2.1 lets a cache treat invalid freshness as stale).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_TCHAR = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)
_OWS = " \t"
DELTA_SECONDS_MAX = 2**31  # RFC 9111 1.2.2
_SECONDS = frozenset({"max-age", "s-maxage"})
_FLAGS = frozenset({"no-store", "public", "must-revalidate", "proxy-revalidate"})
_FIELD_LISTS = frozenset({"no-cache", "private"})


@dataclass(frozen=True)
class CacheControl:
    max_age: int | None = None
    s_maxage: int | None = None
    no_store: bool = False
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    # True (bare), or the field names it names (``no-cache="set-cookie"``); False when absent
    no_cache: bool | tuple[str, ...] = False
    private: bool | tuple[str, ...] = False


def _qdtext_or_pair(c: str) -> bool:
    """A character a quoted string may hold (qdtext, or the second half of a quoted-pair)."""
    o = ord(c)
    return c in _OWS or 0x21 <= o <= 0x7E or 0x80 <= o <= 0xFF


def directives(value: str) -> Iterator[tuple[str, str | None, bool]]:
    """(lower-case name, argument or None, quoted?) of each directive of one field line."""
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in _OWS:
            i += 1
        if i == n:
            break
        if value[i] == ",":  # an empty list element
            i += 1
            continue
        j = i
        while j < n and value[j] in _TCHAR:
            j += 1
        if j == i:
            raise ValueError(f"unexpected {value[i]!r} where a directive name starts")
        name = value[i:j].lower()
        arg: str | None = None
        quoted = False
        if j < n and value[j] == "=":
            j += 1
            if j < n and value[j] == '"':
                quoted = True
                j += 1
                out: list[str] = []
                while True:
                    if j >= n:
                        raise ValueError(f"{name}: unterminated quoted string")
                    c = value[j]
                    if c == '"':
                        j += 1
                        break
                    if c == "\\":
                        if j + 1 >= n or not _qdtext_or_pair(value[j + 1]):
                            raise ValueError(f"{name}: bad escape in a quoted string")
                        out.append(value[j + 1])
                        j += 2
                        continue
                    if not _qdtext_or_pair(c):
                        raise ValueError(f"{name}: {c!r} in a quoted string")
                    out.append(c)
                    j += 1
                arg = "".join(out)
            else:
                k = j
                while k < n and value[k] in _TCHAR:
                    k += 1
                if k == j:
                    raise ValueError(f"{name}: '=' without a value")
                arg, j = value[j:k], k
        while j < n and value[j] in _OWS:
            j += 1
        if j < n and value[j] != ",":
            raise ValueError(f"{name}: unexpected {value[j]!r} after the directive")
        yield name, arg, quoted
        i = j + 1


def parse_cache_control(values: Iterable[str]) -> CacheControl:
    """The Cache-Control field lines of one message (in order) as one ``CacheControl``."""
    seconds: dict[str, int] = {}
    flags: set[str] = set()
    lists: dict[str, bool | tuple[str, ...]] = {}
    for value in values:
        for name, arg, quoted in directives(value):
            if name in _SECONDS:
                if arg is None or quoted or not arg.isascii() or not arg.isdigit():
                    raise ValueError(f"{name} needs delta-seconds (digits), got {arg!r}")
                seconds.setdefault(name, min(int(arg), DELTA_SECONDS_MAX))
            elif name in _FLAGS:
                if arg is not None:
                    raise ValueError(f"{name} takes no argument")
                flags.add(name)
            elif name in _FIELD_LISTS:
                if arg is None:
                    lists[name] = True
                    continue
                names = tuple(f.strip(_OWS).lower() for f in arg.split(","))
                if not all(names):
                    raise ValueError(f"{name}: an empty field name in {arg!r}")
                have = lists.get(name, ())
                if not isinstance(have, bool):  # a bare one already said it all
                    lists[name] = tuple(dict.fromkeys(have + names))
    return CacheControl(
        max_age=seconds.get("max-age"),
        s_maxage=seconds.get("s-maxage"),
        no_store="no-store" in flags,
        public="public" in flags,
        must_revalidate="must-revalidate" in flags,
        proxy_revalidate="proxy-revalidate" in flags,
        no_cache=lists.get("no-cache", False),
        private=lists.get("private", False),
    )
