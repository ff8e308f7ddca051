"""Certificates and the service-account key for the local control plane, made with `openssl`.

Keys are ECDSA P-256 (fast to generate, accepted by every Kubernetes component). Everything is
written under one directory that the cluster owns and removes.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from aerocdn_localcluster.errors import ClusterError
from aerocdn_localcluster.plan import Certificate

DAYS = "30"


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise ClusterError("the `openssl` command is needed to make the cluster's certificates")
    result = subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _subject(cert: Certificate) -> str:
    parts = [f"/O={o}" for o in cert.organizations]
    parts.append(f"/CN={cert.common_name}")
    return "".join(parts)


def _extensions(cert: Certificate) -> str:
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={'serverAuth' if cert.server else 'clientAuth'}",
    ]
    sans = [f"IP:{ip}" for ip in cert.ip_sans] + [f"DNS:{d}" for d in cert.dns_sans]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    return "\n".join(lines) + "\n"


def make_pki(directory: Path, certs: tuple[Certificate, ...]) -> None:
    """Write ca.{crt,key}, <name>.{crt,key} for each certificate, and sa.{key,pub}."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", DAYS,
        "-subj", "/CN=aerocdn-local-ca",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=directory,
    )  # fmt: skip
    for cert in certs:
        ext = directory / f"{cert.name}.ext"
        ext.write_text(_extensions(cert))
        _openssl(
            "req", "-new", *ec, "-keyout", f"{cert.name}.key", "-out", f"{cert.name}.csr",
            "-subj", _subject(cert),
            cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{cert.name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", str(secrets.randbits(63)), "-days", DAYS, "-extfile", ext.name,
            "-out", f"{cert.name}.crt",
            cwd=directory,
        )  # fmt: skip
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", "sa.key", cwd=directory)  # fmt: skip
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)
