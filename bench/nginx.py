"""nginx configs for the benchmark: the backend (1 KiB answers) and the reverse proxy."""

from __future__ import annotations

import subprocess
from pathlib import Path

from common import BODY_SIZE, HOST

from guard.tools.launch import find_tool


def _nginx_common(workdir: Path, tag: str) -> tuple[str, Path]:
    temp = workdir / f"{tag}-temp"
    temp.mkdir(exist_ok=True)
    return (
        f"""
worker_processes 1;
daemon off;
master_process on;
pid {workdir}/{tag}.pid;
error_log {workdir}/{tag}-error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 30000; }}
""",
        temp,
    )


def nginx_backend_conf(workdir: Path, port: int, body_size: int = BODY_SIZE) -> Path:
    head, temp = _nginx_common(workdir, "backend")
    body = "x" * (body_size - 1) + "\\n"
    conf = (
        head
        + f"""
http {{
  access_log off;
  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi; uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  server {{
    listen {HOST}:{port} backlog=4096;
    location / {{ default_type text/plain; return 200 "{body}"; }}
  }}
}}
"""
    )
    path = workdir / "backend.conf"
    path.write_text(conf)
    return path


def nginx_proxy_conf(workdir: Path, port: int, upstream_port: int, tag: str = "nginx") -> Path:
    head, temp = _nginx_common(workdir, tag)
    conf = (
        head
        + f"""
http {{
  access_log {workdir}/{tag}-access.log combined buffer=64k flush=1s;
  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi; uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  upstream backend {{
    server {HOST}:{upstream_port};
    keepalive 64;
    keepalive_requests 10000000;
  }}
  server {{
    listen {HOST}:{port} backlog=4096;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
    )
    path = workdir / f"{tag}.conf"
    path.write_text(conf)
    return path


def nginx_version() -> str:
    nginx = find_tool("nginx")
    if nginx is None:
        return "?"
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).strip().split("/")[-1]
