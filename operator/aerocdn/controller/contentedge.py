"""Reconcile one ContentEdge: observe -> plan routing -> render -> apply."""

from __future__ import annotations

import logging
from typing import Any

from aerocdn.api import CacheCluster, ContentEdge, InputError
from aerocdn.api.common import Condition
from aerocdn.api.contentedge import KIND as CE_API_KIND
from aerocdn.api.contentedge import ContentEdgeStatus, RegionStatus
from aerocdn.constants import LABEL_CONTENTEDGE
from aerocdn.controller import originhealth, purgeplan
from aerocdn.controller.cache import CachedKube, parse_cached
from aerocdn.controller.children import list_children, sync_children
from aerocdn.controller.conditions import Cond, condition_events, merge_conditions
from aerocdn.controller.context import API_VERSION, CC_KIND, CE_KIND, Context, timestamp
from aerocdn.controller.diff import status_changed
from aerocdn.controller.status import already_failed, report_invalid, report_paused
from aerocdn.render.contentedge import (
    cache_cluster_of,
    region_name,
    render_contentedge_regions,
    render_contentedge_routing,
    routing_configmap_name,
)
from aerocdn.render.dns import DnsPlan, dns_plan
from aerocdn.render.engine import finish, owner_references
from aerocdn.routing import planner
from aerocdn.routing.inputs import cluster_status, facts_of, policy_of
from aerocdn.routing.model import Plan, moved_traffic

log = logging.getLogger(__name__)

CHILD_KINDS = [("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "Deployment"),
               ("policy/v1", "PodDisruptionBudget"),
               ("autoscaling/v2", "HorizontalPodAutoscaler"),
               ("networking.k8s.io/v1", "NetworkPolicy")]
DNS_KIND = ("externaldns.k8s.io/v1alpha1", "DNSEndpoint")


async def reconcile_contentedge(ctx: Context, namespace: str, name: str) -> float | None:
    kube = ctx.kube
    raw = await kube.get(API_VERSION, CE_KIND, namespace, name)
    if raw is None or raw["metadata"].get("deletionTimestamp") or already_failed(ctx, raw):
        return None
    status: dict[str, Any] = raw.get("status") or {}
    generation = raw["metadata"].get("generation")
    now_dt = ctx.clock()
    now = timestamp(now_dt)
    try:
        obj = parse_cached(raw)
        assert isinstance(obj, ContentEdge)
        ce = obj
    except InputError as exc:
        await report_invalid(ctx, raw, exc, now)
        return None

    if ce.spec.paused:
        await report_paused(ctx, raw, now, "children and routing")
        return None

    cc_raw = {c["metadata"]["name"]: c
              for c in await kube.list(API_VERSION, CC_KIND, namespace)}
    clusters: dict[str, CacheCluster] = {}
    for cc_name, c in cc_raw.items():
        try:
            parsed = parse_cached(c)
        except InputError:
            continue
        if isinstance(parsed, CacheCluster):
            clusters[cc_name] = parsed
    uid = raw["metadata"]["uid"]
    # DNSEndpoints are listed even when DNS output is off, so turning it off removes them.
    # DNSEndpoints (an optional API, not watched) are listed while DNS output is on and once
    # after a start, so turning it off removes them.
    dns_key = (namespace, name)
    ask_dns = ce.spec.routing.dns.enabled or dns_key not in ctx.dns_checked
    if ce.spec.routing.dns.enabled:
        ctx.dns_checked.discard(dns_key)
    absent: set[tuple[str, str]] = set()
    live = await list_children(kube, namespace, {LABEL_CONTENTEDGE: name},
                               [*CHILD_KINDS, DNS_KIND] if ask_dns else CHILD_KINDS, uid,
                               missing=absent)
    dns_api = DNS_KIND not in absent
    deployments = {n: o for (k, n), o in live.items() if k == "Deployment"}
    ready = {r.name: (deployments.get(region_name(name, r.name), {}).get("status") or {})
             .get("readyReplicas", 0) for r in ce.spec.regions}
    cluster_of = {r.name: cache_cluster_of(r, clusters) for r in ce.spec.regions}

    # Routing: re-plan from the facts and the plan the edges have now.
    previous: Plan | None = None
    routing_cm = live.get(("ConfigMap", routing_configmap_name(name)))
    if routing_cm is not None:
        try:
            previous = Plan.from_json((routing_cm.get("data") or {}).get("routes.json", ""))
        except ValueError:
            previous = None
    facts = facts_of(ce, ready, cluster_of, {n: cc_raw.get(n) for n in cluster_of.values()},
                     now_dt)
    plan = planner.plan(facts, policy_of(ce), previous)
    routes_json = plan.to_json()

    # The public address of each region: its Service's LoadBalancer ingress, as the watch
    # delivered it (a status change of a Service queues this reconcile: runtime.child_news).
    addresses = external_addresses(
        {r.name: live.get(("Service", region_name(name, r.name))) for r in ce.spec.regions})
    desired = _render(ce, clusters, routes_json, addresses)
    if not dns_api:  # DNS output on, ExternalDNS's CRD not installed: said in DnsRouting
        desired = [o for o in desired if (o["apiVersion"], o["kind"]) != DNS_KIND]
    applied = await sync_children(kube, desired, live)
    if ask_dns and not ce.spec.routing.dns.enabled:
        ctx.dns_checked.add(dns_key)  # none left (sync_children deleted any)
    if applied.applied or applied.deleted:
        log.info("ContentEdge %s/%s: applied %s, deleted %s", namespace, name,
                 applied.applied, applied.deleted)

    events: list[tuple[str, str, str]] = []
    if previous is not None and previous.generation != plan.generation:
        moved = moved_traffic(previous, plan)
        if moved > 0 or _serving(previous) != _serving(plan):
            routes = "; ".join(
                f"{region}: " + ", ".join(f"{r.cache_cluster}={r.weight:g}" for r in rs)
                for region, rs in sorted(plan.cache_routes.items()))
            events.append(("Normal", "RoutingChanged",
                           f"routing plan {plan.generation}: {moved:.0f} req/s of traffic "
                           f"moved; cache routes {routes}"))
    if applied.deleted:
        events.append(("Normal", "Deleted", "deleted " + ", ".join(applied.deleted)))

    regions_status = []
    for r in ce.spec.regions:
        dep = deployments.get(region_name(name, r.name))
        desired_replicas = ((dep or {}).get("spec") or {}).get("replicas", r.replicas)
        cc_name = cluster_of[r.name]
        regions_status.append({
            "name": r.name, "desired": desired_replicas, "ready": ready[r.name],
            "cacheCluster": cc_name, "cacheClusterReady": _cc_ready(cc_raw.get(cc_name))})
    missing = [f"region {s['name']} uses CacheCluster {s['cacheCluster']}, which does not "
               f"exist in namespace {namespace}" for s in regions_status
               if s["cacheCluster"] not in cc_raw]
    ready_regions = sum(1 for s in regions_status if s["ready"] >= s["desired"])
    all_ready = ready_regions == len(regions_status) and not missing
    if missing:
        ready_cond = Cond("Ready", False, "CacheClusterMissing",
                          "; ".join(missing) + ": create it, or set spec.regions[].cacheCluster")
    elif all_ready:
        ready_cond = Cond("Ready", True, "EdgesReady",
                          f"{ready_regions}/{len(regions_status)} regions ready")
    else:
        waiting = ", ".join(f"{s['name']} {s['ready']}/{s['desired']}"
                            for s in regions_status if s["ready"] < s["desired"])
        ready_cond = Cond("Ready", False, "EdgesNotReady", f"waiting for edges: {waiting}")
    progressing = not all_ready and not missing
    origins = await _origin_health(ctx, ce) if ce.spec.origins is not None else None
    new_status = ContentEdgeStatus(
        observed_generation=generation,
        phase="Ready" if all_ready else ("Degraded" if missing else "Progressing"),
        ready=f"{ready_regions}/{len(regions_status)}",
        regions=[RegionStatus.model_validate(r) for r in regions_status],
        routing=plan.summary(),
        origins=origins,
        conditions=[Condition.model_validate(c) for c in merge_conditions(
            status.get("conditions", []), [
            ready_cond,
            Cond("Progressing", progressing, "Reconciling" if progressing else "Converged",
                 "applying children and waiting for edges" if progressing
                 else "children match the spec"),
            *([dns_condition(ce, dns_plan(ce, plan, addresses), dns_api)]
              if ce.spec.routing.dns.enabled else []),
            *([originhealth.condition(origins)] if origins is not None else []),
            Cond("Degraded", bool(missing) or plan.overloaded,
                 "CacheClusterMissing" if missing else
                 ("Overloaded" if plan.overloaded else "AsExpected"),
                 "; ".join(missing) if missing else
                 ("demand exceeds usable capacity in every region; load spread by capacity"
                  if plan.overloaded else "no problem seen")),
        ], generation, now)],
    ).to_api()
    if status_changed(new_status, status):
        await kube.patch_status(API_VERSION, CE_KIND, namespace, name, new_status)
        events += condition_events(status.get("conditions", []), new_status["conditions"])
    for type_, reason, message in events:
        await kube.event(raw, type_, reason, message)

    # with spec.origins: come back to ask the pods again
    health_wait = ctx.origin_health_seconds if origins is not None else None
    if plan.next_change_at is not None:
        return _sooner(max(0.5, (plan.next_change_at - now_dt).total_seconds()), health_wait)
    # Waiting for edges needs no polling: their Deployments' readiness comes by the watch
    # (runtime.child_news) and a CacheCluster's by the fan-out; a lost event is what the
    # resync is for. (The poll ran each waiting ContentEdge every 6 s: 600 of 1,575 runs
    # while 200 became Ready.)
    return health_wait


def _sooner(a: float | None, b: float | None) -> float | None:
    return min(x for x in (a, b) if x is not None) if a is not None or b is not None else None


async def _origin_health(ctx: Context, ce: ContentEdge) -> list[Any]:
    """status.origins: the edge pods' view of each origin, asked at most every
    origin_health_seconds (one Pod list and one call per pod), else the last answers."""
    key = (ce.namespace, ce.name)
    last = ctx.origin_health.get(key)
    now = ctx.monotonic()
    if originhealth.due(last, now, ctx.origin_health_seconds):
        api = ctx.kube.api if isinstance(ctx.kube, CachedKube) else ctx.kube
        pods = purgeplan.edge_pods(await api.list(
            "v1", "Pod", ce.namespace, {"app.kubernetes.io/name": "aerocdn-edge",
                                        LABEL_CONTENTEDGE: ce.name}))
        last = originhealth.Polled(now, await originhealth.poll(pods, ctx.edge_admin_addresses))
        ctx.origin_health[key] = last
    assert last is not None
    return originhealth.summarize(ce.spec.origins or [], last.reports)


_RENDERED: dict[tuple[Any, ...], list[dict[str, Any]]] = {}


def external_addresses(services: dict[str, dict[str, Any] | None]) -> dict[str, str]:
    """Per region, the address a LoadBalancer Service got (IP, else host name), if any."""
    out = {}
    for region, svc in services.items():
        for ingress in (((svc or {}).get("status") or {}).get("loadBalancer") or {}).get(
                "ingress") or []:
            address = ingress.get("ip") or ingress.get("hostname")
            if address:
                out[region] = address
                break
    return out


def dns_condition(ce: ContentEdge, dns: DnsPlan, api_installed: bool = True) -> Cond:
    """DnsRouting (with DNS output on): True when the DNSEndpoint carries the plan as it is -
    each client region its own row, every region with a public address; else False with
    the most urgent gap as the reason and every problem in the message."""
    if not api_installed:
        return Cond("DnsRouting", False, "DNSEndpointAPIMissing",
                    f"the DNSEndpoint API ({DNS_KIND[0]}) is not installed, so no record is "
                    "published: install ExternalDNS with its CRD (docs/dns.md)")
    gap = dns.gap()
    if gap is None:
        clients = len({m.region for m in ce.spec.routing.dns.client_regions})
        return Cond("DnsRouting", True, "FollowsPlan",
                    f"{clients} client regions, each with its own row of the routing plan")
    return Cond("DnsRouting", False, gap.value, "; ".join(dns.warnings))


def _render(ce: ContentEdge, clusters: dict[str, CacheCluster], routes_json: str,
            addresses: dict[str, str]) -> list[dict[str, Any]]:
    """render_contentedge, with the costly part - the per-region objects - remembered while
    its inputs are the same versions: the spec (uid, generation) and the CacheClusters its
    regions use (which one each region uses, and its uid and generation: a change of another
    cluster of the namespace renders nothing again). The routing plan changes whenever a
    cluster scales; only the small objects that carry it are rendered again. The result is
    read-only."""
    used = {r.name: cache_cluster_of(r, clusters) for r in ce.spec.regions}
    key = (ce.metadata.uid, ce.metadata.generation,
           tuple(sorted((region, n, *((c.metadata.uid, c.metadata.generation)
                                      if (c := clusters.get(n)) is not None else ()))
                        for region, n in used.items())))
    base = _RENDERED.get(key) if ce.metadata.uid is not None else None
    if base is None:
        base = render_contentedge_regions(ce, clusters)
        if len(_RENDERED) >= 2048:
            _RENDERED.pop(next(iter(_RENDERED)))
        _RENDERED[key] = base
    return finish([*base, *render_contentedge_routing(ce, routes_json, addresses)],
                  owner_references(CE_API_KIND, ce.name, ce.metadata.uid))


def _serving(plan: Plan) -> dict[str, list[str]]:
    """Which CacheClusters each edge region uses at all (a drain or an undrain changes it)."""
    return {region: sorted(r.cache_cluster for r in routes if r.weight > 0)
            for region, routes in plan.cache_routes.items()}


def _cc_ready(cc: dict[str, Any] | None) -> bool:
    if cc is None:
        return False
    return cluster_status(cc).is_true("Ready")
