"""`guard check` is the ops team's `nginx -t`: exit status and messages are a contract."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from guard.tools.launch import free_port_run

ROOT = Path(__file__).resolve().parents[2]


def guard(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guard.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_accepts_the_shipped_configs() -> None:
    for name in ("config/demo.yaml", "config/guard.yaml"):
        done = guard("check", "-c", name)
        assert done.returncode == 0, done.stderr
        assert "was-1" in done.stdout and "was-2" in done.stdout
        assert done.stderr == ""


def test_check_prints_every_problem_with_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "waiting.html").write_text("wait")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "waiting_page: waiting.html\n"
        "backends:\n"
        "  - {name: was-1, url: 'http://127.0.0.1:8081', max_active: 0}\n"
        "rules:\n"
        "  - name: event\n"
        "    path: /event/**\n"
        "    rate: fast\n"
        "    max_actve: 3\n"
    )
    done = guard("check", "-c", str(cfg))
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert f'{cfg}:7: rules[0].rate: expected "<n>/s" or "<n>/m", got "fast"' in lines
    assert any(line.startswith(f"{cfg}:3: backends[0].max_active:") for line in lines)
    assert any(line.startswith(f"{cfg}:8: rules[0].max_actve:") for line in lines)


def test_run_refuses_an_invalid_config_without_starting(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("backends: []\n")
    done = guard("run", "-c", str(cfg))
    assert done.returncode != 0
    assert "backends" in done.stderr


def test_version() -> None:
    from importlib.metadata import version

    done = guard("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"guard {version('guard')}"


def test_help_is_for_users() -> None:
    top = guard("--help")
    assert top.returncode == 0
    assert "worker" not in top.stdout  # started by the supervisor, never by hand
    assert "sys.exit" not in top.stdout and "loop choice" not in top.stdout
    run = guard("run", "--help")
    assert "config file (default: config/guard.yaml)" in " ".join(run.stdout.split())


def occupied_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, int(sock.getsockname()[1])


@pytest.mark.parametrize("key", ["listen", "admin_listen"])
def test_port_in_use_is_one_line_naming_the_key(tmp_path: Path, key: str) -> None:
    sock, taken = occupied_port()
    ports = {"listen": f"127.0.0.1:{taken}", "admin_listen": "127.0.0.1:0"}
    if key == "admin_listen":
        ports = {"listen": "127.0.0.1:0", "admin_listen": f"127.0.0.1:{taken}"}
    (tmp_path / "waiting.html").write_text("wait")
    cfg = tmp_path / "guard.yaml"
    cfg.write_text(
        f"listen: {ports['listen']}\nadmin_listen: {ports['admin_listen']}\n"
        "backends:\n  - {name: b, url: 'http://127.0.0.1:1', max_active: 1}\n"
    )
    with sock:
        done = guard("run", "-c", str(cfg))
    assert done.returncode != 0
    errors = [ln for ln in done.stderr.splitlines() if " INFO " not in ln]
    assert len(errors) == 1, done.stderr
    assert f"{key} 127.0.0.1:{taken}" in errors[0] and "in use" in errors[0]


def test_demo_with_a_wasport_in_use_is_one_line() -> None:
    """`guard demo --port-base N` runs its simulated WAS on N+2 and N+3: one taken is said in
    one line naming the flag, not a traceback."""
    base = free_port_run(4)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", base + 2))
        sock.listen()
        done = guard("demo", "--port-base", str(base))
    assert done.returncode != 0
    errors = [ln for ln in done.stderr.splitlines() if " INFO " not in ln]
    assert len(errors) == 1, done.stderr
    assert f"--port-base 127.0.0.1:{base + 2} (was-1)" in errors[0] and "in use" in errors[0]
