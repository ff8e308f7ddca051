"""Deterministic YAML output shared by every command that prints or writes objects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

# libyaml's emitter where PyYAML has it (it renders the same text, several times faster)
_Base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):  # type: ignore[valid-type,misc]
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line strings (aerospike.conf, nginx.conf) as literal blocks, so a diff reads well.
    if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def dump(obj: Any) -> str:
    """One object as YAML: keys sorted, block style, stable line width."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=100)


def dump_all(objects: Iterable[Any]) -> str:
    """Objects as a multi-document YAML stream."""
    return "".join(f"---\n{dump(o)}" for o in objects)
