"""Issue 11 "What to add": rate limits (limit_req / limit_conn per client IP, trusted
proxies, 429 + Retry-After) and HTTPS with SNI + HTTP/2 from kubernetes.io/tls-style files,
tested against the real nginx with a CA generated for the test; certificate rotation reloads
nginx without a restart."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.edge.edgeharness import HOST, Origin, PodFactory, free_port, raw_get

pytestmark = pytest.mark.timeout(90)


async def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# ----------------------------------------------------------------------------- rate limits


async def test_a_burst_over_the_rate_gets_429_with_retry_after(
        pods: PodFactory, origin: Origin) -> None:
    origin.set("/rl", body=b"ok")
    pod = await pods(rateLimits={"requestsPerSecond": 1, "burst": 2})
    answers = await asyncio.gather(*(raw_get(pod.url, "/rl") for _ in range(30)))
    ok = [a for a in answers if a.status == 200]
    limited = [a for a in answers if a.status == 429]
    assert len(ok) + len(limited) == 30
    assert len(ok) >= 1 and len(limited) >= 20
    for a in limited:
        assert a.headers["retry-after"] == "1" and a.body == b"429 Too Many Requests\n"
    assert origin.hits["/rl"] == 1


async def test_client_ip_comes_from_the_header_only_behind_a_trusted_proxy(
        pods: PodFactory, origin: Origin) -> None:
    origin.set("/ip", body=b"ok")
    trusted = await pods(rateLimits={"requestsPerSecond": 1, "trustedProxies": ["127.0.0.1/32"]})
    untrusted = await pods(rateLimits={"requestsPerSecond": 1,
                                       "trustedProxies": ["10.0.0.0/8"]})

    async def burst(base: str, same: bool) -> list[int]:
        answers = await asyncio.gather(*(raw_get(
            base, "/ip", headers={"X-Forwarded-For": "203.0.113.7" if same
                                  else f"203.0.113.{i}"}) for i in range(20)))
        return [a.status for a in answers]

    assert await burst(trusted.url, same=False) == [200] * 20  # 20 clients, one request each
    assert (await burst(trusted.url, same=True)).count(429) >= 15  # one client, 20 at once
    # the header is not believed from an untrusted peer: all 20 are one client (127.0.0.1)
    assert (await burst(untrusted.url, same=False)).count(429) >= 15


async def test_concurrent_requests_per_client_are_limited(
        pods: PodFactory, origin: Origin) -> None:
    gate = asyncio.Event()
    origin.set("/slow", body=b"done", gate=gate)
    pod = await pods(rateLimits={"connectionsPerClient": 2})
    first = [asyncio.create_task(raw_get(pod.url, f"/slow?i={i}")) for i in range(2)]
    await wait_until(lambda: origin.hits["/slow"] == 2)
    more = await asyncio.gather(*(raw_get(pod.url, f"/slow?j={i}") for i in range(3)))
    assert [a.status for a in more] == [429] * 3
    assert all(a.headers["retry-after"] == "1" for a in more)
    gate.set()
    assert [(await t).status for t in first] == [200, 200]


# ----------------------------------------------------------------------------- HTTPS


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> Path:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj",
             f"/CN={name}", "-days", "2", cwd=d)
    return d / f"{name}.crt"


def make_cert(d: Path, ca: str, name: str, dns: str) -> tuple[Path, Path]:
    (d / f"{name}.ext").write_text(f"subjectAltName=DNS:{dns}\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={dns}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
             cwd=d)
    return d / f"{name}.crt", d / f"{name}.key"


def _https_get(port: int, sni: str, ca: Path, path: str = "/") -> tuple[bytes, bytes]:
    """-> (DER certificate the server presented, raw answer).  Blocking; run in a thread."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), 10) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        cert = s.getpeercert(binary_form=True) or b""
    return cert, data


def _der(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    d = tmp_path / "pki"
    d.mkdir()
    make_ca(d, "ca")
    main_crt, main_key = make_cert(d, "ca", "main", HOST)
    img_crt, img_key = make_cert(d, "ca", "img", "*.img.example.test")
    # kubernetes.io/tls Secret layout: <mount>/tls.crt, <mount>/tls.key
    out = {"ca": d / "ca.crt"}
    for name, crt, key in (("main", main_crt, main_key), ("img", img_crt, img_key)):
        m = tmp_path / "tls" / name
        m.mkdir(parents=True)
        shutil.copy(crt, m / "tls.crt")
        shutil.copy(key, m / "tls.key")
        out[name] = m
    out["pki"] = d
    return out


def _tls_cfg(certs: dict[str, Path], port: int, **kw: object) -> dict[str, object]:
    return {"listen": f"127.0.0.1:{port}", "reloadPollSeconds": 0.1, **kw, "certificates": [
        {"hosts": [HOST], "certFile": str(certs["main"] / "tls.crt"),
         "keyFile": str(certs["main"] / "tls.key")},
        {"hosts": ["*.img.example.test"], "certFile": str(certs["img"] / "tls.crt"),
         "keyFile": str(certs["img"] / "tls.key")}]}


async def test_https_serves_each_host_its_certificate_by_sni(
        pods: PodFactory, origin: Origin, certs: dict[str, Path]) -> None:
    origin.set("/s", body=b"secure")
    port = free_port()
    await pods(tls=_tls_cfg(certs, port))
    loop = asyncio.get_running_loop()
    cert, data = await loop.run_in_executor(None, _https_get, port, HOST, certs["ca"], "/s")
    assert cert == _der(certs["main"] / "tls.crt")
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"secure")
    cert, data = await loop.run_in_executor(None, _https_get, port, "a.img.example.test",
                                            certs["ca"], "/s")
    assert cert == _der(certs["img"] / "tls.crt") and data.endswith(b"secure")
    with pytest.raises(ssl.SSLError):  # unknown SNI: refused at the handshake
        await loop.run_in_executor(None, _https_get, port, "evil.example", certs["ca"], "/s")


async def test_http2_is_offered_on_https(
        pods: PodFactory, origin: Origin, certs: dict[str, Path]) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    origin.set("/h2", body=b"two")
    port = free_port()
    await pods(tls=_tls_cfg(certs, port))
    out = await asyncio.get_running_loop().run_in_executor(None, lambda: subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", str(certs["ca"]), "--resolve",
         f"{HOST}:{port}:127.0.0.1", f"https://{HOST}:{port}/h2", "-w",
         "\n%{http_version} %{http_code}"], capture_output=True, text=True, timeout=30))
    assert out.stdout.splitlines()[-2:] == ["two", "2 200"], out.stderr


async def test_plain_http_can_redirect_to_https(
        pods: PodFactory, origin: Origin, certs: dict[str, Path]) -> None:
    port = free_port()
    pod = await pods(tls=_tls_cfg(certs, port, redirectHttp=True))
    a = await raw_get(pod.url, "/x?y=1")
    assert a.status == 308 and a.headers["location"] == f"https://{HOST}/x?y=1"
    assert origin.hits["/x"] == 0


async def test_a_rotated_certificate_is_served_after_a_reload_without_restart(
        pods: PodFactory, origin: Origin, certs: dict[str, Path]) -> None:
    origin.set("/r", body=b"r")
    port = free_port()
    pod = await pods(tls=_tls_cfg(certs, port))
    assert pod.nginx is not None and pod.nginx.proc is not None
    master = pod.nginx.proc.pid
    loop = asyncio.get_running_loop()
    new_crt, new_key = make_cert(certs["pki"], "ca", "main2", HOST)
    # what the kubelet does with a Secret volume: new files, swapped in place
    shutil.copy(new_key, certs["main"] / "tls.key.new")
    shutil.copy(new_crt, certs["main"] / "tls.crt.new")
    (certs["main"] / "tls.key.new").replace(certs["main"] / "tls.key")
    (certs["main"] / "tls.crt.new").replace(certs["main"] / "tls.crt")
    want = _der(new_crt)
    served: list[bytes] = []

    async def rotated() -> bool:
        cert, data = await loop.run_in_executor(None, _https_get, port, HOST, certs["ca"], "/r")
        served.append(data)
        return cert == want

    deadline = time.monotonic() + 30
    while not await rotated():
        assert time.monotonic() < deadline, "the new certificate was never served"
        await asyncio.sleep(0.1)
    assert all(d.startswith(b"HTTP/1.1 200") for d in served)  # served throughout
    assert pod.nginx.proc.pid == master and pod.nginx.proc.poll() is None  # reload, no restart
    assert pod.edge.m.tls_reloads._value.get() >= 1
