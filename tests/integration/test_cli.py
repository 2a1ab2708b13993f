"""`guard check` is the ops team's `nginx -t`: exit status and messages are a contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
