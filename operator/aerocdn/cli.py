"""The aerocdn command: render | crds | run | edge | purge."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from aerocdn.api.objects import (
    CacheCluster,
    ContentEdge,
    ContentPurge,
    InputError,
    Problem,
    parse_object,
)
from aerocdn.yamlio import dump, dump_all

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _files(paths: Sequence[str]) -> tuple[list[Path], list[Problem]]:
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES)
            if not found:
                problems.append(Problem(str(path), "directory", "", "holds no .yaml/.yml/.json"))
            files += found
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), "file", "", "no such file or directory"))
    return files, problems


def load_manifests(paths: Sequence[str]) -> list[CacheCluster | ContentEdge | ContentPurge]:
    """Parse and validate every object in the given files and directories.

    Raises InputError listing every problem found (all files are read first), so a caller
    prints either all objects or none.
    """
    files, problems = _files(paths)
    objects: list[CacheCluster | ContentEdge | ContentPurge] = []
    for path in files:
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            problems.append(Problem(str(path), "document", "", f"invalid YAML: {where}{problem}"))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), "file", "", f"cannot read: {exc}"))
            continue
        for doc in docs:
            if doc is None:
                continue
            try:
                objects.append(parse_object(doc, str(path)))
            except InputError as exc:
                problems += exc.problems
    if problems:
        raise InputError(problems)
    return objects


def cmd_render(args: argparse.Namespace) -> int:
    from aerocdn.render import render_all

    objects = load_manifests(args.filename)
    sys.stdout.write(dump_all(render_all(objects)))
    return 0


def cmd_crds(args: argparse.Namespace) -> int:
    from aerocdn.api.crd import all_crds

    crds = {name: dump(obj) for name, obj in all_crds().items()}
    if args.out is None:
        sys.stdout.write("".join(f"---\n{text}" for text in crds.values()))
        return 0
    out = Path(args.out)
    if args.check:
        stale = [n for n, text in crds.items() if not (out / n).is_file()
                 or (out / n).read_text() != text]
        for name in stale:
            print(f"aerocdn: {out / name} is stale; run `aerocdn crds --out {out}`",
                  file=sys.stderr)
        return 1 if stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in crds.items():
        (out / name).write_text(text)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from aerocdn.controller.main import run

    return run(args)


def cmd_edge(args: argparse.Namespace) -> int:
    from aerocdn.edge.app import main as edge_main

    return edge_main(["--config", args.config])


def cmd_purge(args: argparse.Namespace) -> int:
    from aerocdn import purgecli

    try:
        return purgecli.run(args)
    except InputError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print("error: nothing was created", file=sys.stderr)
        return purgecli.EXIT_BAD_INPUT


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aerocdn", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", help="print the Kubernetes objects the operator would create")
    r.add_argument("-f", "--filename", action="append", required=True,
                   help="manifest file or directory (repeatable)")
    r.set_defaults(func=cmd_render)

    c = sub.add_parser("crds", help="print or write the CustomResourceDefinitions")
    c.add_argument("--out", help="directory to write one file per CRD into")
    c.add_argument("--check", action="store_true", help="with --out: fail if files are stale")
    c.set_defaults(func=cmd_crds)

    run = sub.add_parser("run", help="run the operator")
    from aerocdn.controller.options import add_run_arguments

    add_run_arguments(run)
    run.set_defaults(func=cmd_run)

    e = sub.add_parser("edge", help="run the edge service (nginx's upstream)")
    e.add_argument("--config", required=True, help="edge config file (edge.yaml)")
    e.set_defaults(func=cmd_edge)

    from aerocdn import purgecli

    pg = sub.add_parser(
        "purge", help="purge URLs or prefixes from a ContentEdge in every region and wait",
        description="Create a ContentPurge and wait until every edge pod confirmed it. Exit "
        "0 when complete, 1 when not (failed, --timeout passed, API error), 2 for bad input "
        "(nothing created).")
    purgecli.add_arguments(pg)
    pg.set_defaults(func=cmd_purge)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result: Any = args.func(args)
    except InputError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
