"""`aerocdn purge`: create a ContentPurge and wait until the operator reports it complete.

Exit codes: 0 complete (every edge pod confirmed); 1 not complete (failed, deadline passed,
the API refused or could not be reached); 2 bad input (nothing was created). The pure parts
(the object, the checks, the verdict and what is printed) are functions of data; ``run``
talks to the API.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from aerocdn.api.common import OBJECT_NAME_MAX
from aerocdn.api.contentpurge import KIND, PLURAL, ContentPurgeSpec, ContentPurgeStatus
from aerocdn.api.objects import InputError, Problem, parse_object
from aerocdn.constants import API_VERSION, GROUP, VERSION

EXIT_COMPLETE, EXIT_INCOMPLETE, EXIT_BAD_INPUT = 0, 1, 2
# spec field -> the option that fills it (errors name both)
OPTION = {"urls": "--url", "prefixes": "--prefix", "tags": "--tag",
          "ttlSecondsAfterFinished": "--ttl",
          "contentEdgeRef": "CONTENTEDGE"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("contentedge", metavar="CONTENTEDGE", help="the ContentEdge to purge")
    p.add_argument("--url", action="append", default=[], dest="urls", metavar="URL",
                   help="a URL to purge, e.g. https://www.example.com/a.css (repeatable)")
    p.add_argument("--prefix", action="append", default=[], dest="prefixes", metavar="PREFIX",
                   help="a URL prefix to purge, e.g. www.example.com/img/ (repeatable)")
    p.add_argument("--tag", action="append", default=[], dest="tags", metavar="TAG",
                   help="a tag (surrogate key) to purge: every object the origin tagged with "
                        "it (repeatable)")
    p.add_argument("--soft", action="store_true",
                   help="mark stale instead of removing (stale-while-revalidate and "
                        "stale-if-error still apply)")
    p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    p.add_argument("--name", help="name of the ContentPurge (default: CONTENTEDGE-<random>)")
    p.add_argument("--ttl", type=int, default=3600, metavar="SECONDS",
                   help="delete the ContentPurge this long after it completed (default 3600; "
                        "-1: keep it)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                   help="how long to wait for completion (default 300)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config "
                                        "or in-cluster)")


def default_name(contentedge: str, token: str | None = None) -> str:
    """CONTENTEDGE-<6 hex>, within the object name limit of aerocdn's kinds."""
    suffix = token or secrets.token_hex(3)
    return f"{contentedge[:OBJECT_NAME_MAX - len(suffix) - 1].rstrip('-')}-{suffix}"


def build(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    """The ContentPurge the arguments ask for, validated by the API model; InputError names
    the object, the field and the option that filled it."""
    name = args.name or default_name(args.contentedge)
    spec: dict[str, Any] = {"contentEdgeRef": {"name": args.contentedge}}
    if args.urls:
        spec["urls"] = list(args.urls)
    if args.prefixes:
        spec["prefixes"] = list(args.prefixes)
    if args.tags:
        spec["tags"] = list(args.tags)
    if args.soft:
        spec["soft"] = True
    if args.ttl is not None and args.ttl >= 0:
        spec["ttlSecondsAfterFinished"] = args.ttl
    obj = {"apiVersion": API_VERSION, "kind": KIND,
           "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    try:
        parse_object(obj)
    except InputError as exc:
        raise InputError([_with_option(p) for p in exc.problems]) from None
    return obj


def _with_option(p: Problem) -> Problem:
    parts = p.field.split(".")
    option = OPTION.get(parts[1].split("[")[0]) if len(parts) > 1 else None
    if p.field == "spec" and "target" in p.message:
        option = "--url/--prefix/--tag"
    if p.field.startswith("metadata.name"):
        option = "--name"
    if option is None:
        return p
    return Problem(p.source, p.object, f"{p.field} ({option})", p.message)


def check_hosts(obj: dict[str, Any], contentedge: dict[str, Any] | None) -> None:
    """The ContentEdge exists and serves every target's host (the operator would refuse the
    purge otherwise): checked before anything is created."""
    from aerocdn.controller.purgeplan import check_hosts as plan_check

    meta = obj["metadata"]
    what = f"{KIND}/{meta['name']}"
    ce_name = obj["spec"]["contentEdgeRef"]["name"]
    if contentedge is None:
        raise InputError([Problem("", what, "spec.contentEdgeRef.name (CONTENTEDGE)",
                                  f"ContentEdge {meta['namespace']}/{ce_name} does not exist")])
    invalid = plan_check(ContentPurgeSpec.model_validate(obj["spec"]),
                         (contentedge.get("spec") or {}).get("hosts") or [])
    if invalid is not None:
        raise InputError([_with_option(Problem("", what, invalid.field, invalid.message))])


@dataclass(frozen=True)
class Verdict:
    done: bool  # nothing more will change without someone acting (or it completed)
    complete: bool
    summary: str


def verdict(obj: dict[str, Any] | None) -> Verdict:
    """What the ContentPurge's status says now."""
    if obj is None:
        return Verdict(True, False, "the ContentPurge was deleted before it completed")
    status = ContentPurgeStatus.model_validate(obj.get("status") or {})
    cond = status.condition("Complete")
    if cond is not None and cond.true:
        return Verdict(True, True, cond.message)
    if status.phase == "Failed":
        return Verdict(True, False, cond.message if cond else "failed")
    return Verdict(False, False, describe(status))


def describe(status: ContentPurgeStatus) -> str:
    """One line per region and per pod that has not confirmed, with why."""
    cond = status.condition("Complete")
    lines = [f"phase {status.phase or 'not started'}: {status.confirmed}/{status.pods} edge "
             f"pods confirmed" + (f" ({cond.reason}: {cond.message})" if cond and cond.reason
                                  in ("ContentEdgeNotFound", "NoPurgeToken", "NoEdgePods")
                                  else "")]
    for region in status.regions:
        lines.append(f"  region {region.name}: {region.confirmed}/{len(region.pods)} confirmed")
        lines += [f"    {p.name}: {p.state}" + (f": {p.message}" if p.message else "")
                  for p in region.pods if p.state != "Confirmed"]
    return "\n".join(lines)


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    from kubernetes import client, config

    try:
        if args.kubeconfig:
            config.load_kube_config(config_file=args.kubeconfig)
        else:
            try:
                config.load_kube_config()
            except config.ConfigException:
                config.load_incluster_config()
    except (config.ConfigException, OSError) as exc:
        _err(f"cannot load a kubeconfig: {exc}")
        return EXIT_INCOMPLETE
    namespace = args.namespace or _context_namespace(args.kubeconfig)
    obj = build(args, namespace)  # InputError: exit 2 (main)
    name = obj["metadata"]["name"]
    what = f"{KIND} {namespace}/{name}"
    custom = client.CustomObjectsApi()
    ce: dict[str, Any] | None
    try:
        ce = cast(dict[str, Any], custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "contentedges", args.contentedge))
    except client.ApiException as exc:
        if exc.status != 404:
            _err(f"cannot read ContentEdge {namespace}/{args.contentedge}: {_api_error(exc)}")
            return EXIT_INCOMPLETE
        ce = None
    check_hosts(obj, ce)
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj)
    except client.ApiException as exc:
        _err(f"cannot create {what}: {_api_error(exc)}")
        return EXIT_BAD_INPUT if exc.status in (400, 422) else EXIT_INCOMPLETE
    out(f"{what} created")
    deadline = time.monotonic() + args.timeout
    last = ""
    current: dict[str, Any] | None
    while True:
        try:
            current = cast(dict[str, Any], custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name))
        except client.ApiException as exc:
            if exc.status != 404:
                _err(f"cannot read {what}: {_api_error(exc)}")
                return EXIT_INCOMPLETE
            current = None
        v = verdict(current)
        if v.complete:
            out(f"{what} complete: {v.summary}")
            return EXIT_COMPLETE
        if v.done:
            _err(f"{what} did not complete: {v.summary}")
            return EXIT_INCOMPLETE
        if v.summary != last:
            out(v.summary)
            last = v.summary
        if time.monotonic() >= deadline:
            _err(f"{what} not complete after {args.timeout:g} s (--timeout); it goes on "
                 f"without this command:\n{v.summary}")
            return EXIT_INCOMPLETE
        time.sleep(1.0)


def _context_namespace(kubeconfig: str | None) -> str:
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        return str((active or {}).get("context", {}).get("namespace") or "default")
    except (config.ConfigException, OSError):
        return "default"


def _api_error(exc: Any) -> str:
    import json

    try:
        body = json.loads(exc.body)
        return f"{exc.status} {body.get('reason', '')}: {body.get('message', exc.body)}"
    except (TypeError, ValueError):
        return f"{exc.status} {exc.reason}"


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
