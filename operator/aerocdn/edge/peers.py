"""Where the other edge pods of the region are (purge fan-out).  Pluggable: the headless
Service's DNS name in production, a static list in tests or on a laptop."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Protocol

from aerocdn.edge.config import PeersConfig


class PeerSource(Protocol):
    async def peers(self) -> list[str]: ...


class StaticPeers:
    def __init__(self, addresses: tuple[str, ...], self_addresses: frozenset[str]):
        self._addresses = [a for a in addresses if a not in self_addresses]

    async def peers(self) -> list[str]:
        return list(self._addresses)


class DnsPeers:
    """One A/AAAA record per ready pod of the headless Service.  The pod's own IP (``POD_IP``
    from the downward API) is left out: the pod purges itself directly."""

    def __init__(self, name: str, port: int, self_ip: str | None):
        self._name = name
        self._port = port
        self._self_ip = self_ip

    async def peers(self) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self._name, self._port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            return []
        ips = sorted({str(i[4][0]) for i in infos} - {self._self_ip or ""})
        return [f"[{ip}]:{self._port}" if ":" in ip else f"{ip}:{self._port}" for ip in ips]


def peer_source(cfg: PeersConfig, self_admin: str) -> PeerSource:
    if cfg.dns_name:
        return DnsPeers(cfg.dns_name, cfg.admin_port, os.environ.get("POD_IP"))
    return StaticPeers(cfg.static, frozenset({self_admin}))
