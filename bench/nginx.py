"""The reference server of the HLS benchmark: nginx with `proxy_cache` and
`proxy_cache_lock on` (bench/nginx.conf.template) in front of the engine, its config
rendered into the run's own directory."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import HOST, BenchError, Child, wait_answering

TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"


def ensure_nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("nginx is not installed; as root: apt-get install -y nginx")
    print("installing nginx (apt-get install -y nginx) ...", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["apt-get", "install", "-y", "nginx"],
        check=True,
        timeout=600,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise BenchError("apt-get installed nginx, but there is no nginx binary")
    return found


def render_nginx(prefix: Path, port: int, engine_port: int) -> Path:
    text = TEMPLATE.read_text()
    # A master started as root runs its workers as an unprivileged user, who must be able
    # to reach and write the cache and temp dirs in our tmp dir.
    worker = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    for name, value in (
        ("@USER@", worker.pw_name),
        ("@GROUP@", grp.getgrgid(worker.pw_gid).gr_name),
        ("@PREFIX@", str(prefix)),
        ("@PORT@", str(port)),
        ("@ENGINE@", f"{HOST}:{engine_port}"),
    ):
        text = text.replace(name, value)
    prefix.mkdir(parents=True, exist_ok=True)
    for parent in (prefix, *prefix.parents):
        if parent == Path(tempfile.gettempdir()):
            break
        parent.chmod(parent.stat().st_mode | 0o111)
    for sub in ("client_body", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp", "cache"):
        (prefix / sub).mkdir(exist_ok=True)
        os.chown(prefix / sub, worker.pw_uid, worker.pw_gid)
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


def nginx_version(nginx: str) -> str:
    done = subprocess.run([nginx, "-v"], check=False, capture_output=True, text=True, timeout=10)
    return done.stderr.strip().removeprefix("nginx version: ")


def start_nginx(nginx: str, workdir: Path, port: int, engine_port: int) -> Child:
    conf = render_nginx(workdir / "prefix", port, engine_port)
    prefix = conf.parent
    argv = [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    child = Child("nginx", argv, workdir / "nginx.log")
    wait_answering(child, port, "/nginx-is-up")
    return child
