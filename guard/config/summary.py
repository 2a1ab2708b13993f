"""The `guard check` screen: one page, like `nginx -t`, of what the config will do."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the types are only for mypy; models need nothing from here
    from guard.config.models import Config, LoadedConfig
    from guard.config.sections import Rule


def summarize(loaded: LoadedConfig) -> str:
    """One screen for `guard check`: addresses, ceilings, backends and rules in order."""
    cfg = loaded.config
    site = cfg.max_active if cfg.max_active is not None else "none"
    lines = [
        f"guard configuration {loaded.path} (sha256 {loaded.sha256[:12]})",
        f"listen {cfg.listen}   admin {cfg.admin_listen}   workers {cfg.workers}",
        f"admin hosts {', '.join(cfg.admin_hosts) or '(loopback names only)'}   "
        f"admin token {cfg.admin_token_file or 'none'}",
        f"site max_active {site}   retry_after {_duration(cfg.retry_after)}   "
        f"timeouts connect {_duration(cfg.timeouts.connect)} read {_duration(cfg.timeouts.read)}",
        f"waiting page {cfg.waiting_page}   static {cfg.static_dir}",
        "",
        f"backends ({len(cfg.backends)}):",
        *_table(
            ["name", "url", "max_active", "drain"],
            [[b.name, b.url, str(b.max_active), "yes" if b.drain else "no"] for b in cfg.backends],
        ),
        "",
        f"rules ({len(cfg.rules)}, first match wins):",
        *_table(
            ["#", "name", "path", "methods", "max_active", "rate (burst)", "per_client", "action"],
            [_rule_row(i, r) for i, r in enumerate(cfg.rules, 1)]
            + [["-", "default", "(anything else)", "*", "-", "-", "-", "wait"]],
        ),
        *_rooms(cfg),
        "",
        f"configuration OK: {loaded.path}",
    ]
    return "\n".join(lines)


def _rooms(cfg: Config) -> list[str]:
    """The rooms and, as warnings, what is legal but probably unwanted (no key file)."""
    from guard.config.rooms import room_warnings

    if not cfg.rooms:
        return []
    users = {room.name: [r.name for r in cfg.rules if r.room == room.name] for room in cfg.rooms}
    rows = [
        [r.name, str(r.admit_rate), ",".join(users[r.name]) or "-", "yes" if r.dry_run else "-"]
        for r in cfg.rooms
    ]
    table = _table(["name", "admit_rate", "rules", "dry_run"], rows)
    return [
        "",
        f"rooms ({len(cfg.rooms)}):",
        *table,
        *(f"warning: {w}" for w in room_warnings(cfg)),
    ]


def _rule_row(index: int, rule: Rule) -> list[str]:
    rate = f"{rule.rate} ({rule.effective_burst})" if rule.rate else "-"
    action = "bypass" if rule.bypass else "block" if rule.block else rule.action
    return [
        str(index),
        rule.name,
        rule.path,
        ",".join(rule.methods or ["*"]),
        str(rule.max_active or "-"),
        rate,
        "yes" if rule.per_client else "-",
        action,
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _duration(seconds: float) -> str:
    """2.0 -> '2s', 0.5 -> '500ms', 60 -> '1m': the form a user would write."""
    if seconds < 1 and (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds:g}s"
