"""Checks across sections (reserves under every ceiling, unique routes), and warnings:
settings that load but are probably a mistake (``guard check`` prints them, exit 0)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Final

from guard.config.errors import Problem, key_path
from guard.config.reader import Loc, YamlDocument
from guard.config.sections import Backend, Rule

# RFC 9110 §9 and the IANA HTTP method registry (WebDAV, DeltaV, CalDAV, ...).
KNOWN_METHODS: Final = frozenset((
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY",
    "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT",
    "ACL", "BIND", "UNBIND", "REBIND", "LINK", "UNLINK", "MKCALENDAR", "MKREDIRECTREF",
    "UPDATEREDIRECTREF", "ORDERPATCH", "MKWORKSPACE", "VERSION-CONTROL", "CHECKIN",
    "CHECKOUT", "UNCHECKOUT", "UPDATE", "LABEL", "MERGE", "MKACTIVITY", "BASELINE-CONTROL",
))  # fmt: skip


def reserve_conflicts(
    site_max: int | None, backends: Sequence[Backend], rules: Sequence[Rule]
) -> list[tuple[Loc, str]]:
    """Reserves add up per ceiling and must leave other rules at least one slot under the
    site ceiling and under every backend ceiling. Blames the rule whose reserve makes the
    running sum reach a ceiling."""
    ceilings = [(f"backends[{i}].max_active", b.max_active) for i, b in enumerate(backends)]
    if site_max is not None:
        ceilings.insert(0, ("max_active", site_max))
    found: list[tuple[Loc, str]] = []
    total = 0
    for index, rule in enumerate(rules):
        if rule.reserve == 0:
            continue
        total += rule.reserve
        full = [f"{key} ({ceiling})" for key, ceiling in ceilings if total >= ceiling]
        if full:
            found.append(
                (
                    ("rules", index, "reserve"),
                    f"reserves add up to {total}, leaving other rules no room under "
                    + ", ".join(full),
                )
            )
    return found


def route_conflicts(backends: Sequence[Backend]) -> list[tuple[Loc, str]]:
    first: dict[str, int] = {}
    found: list[tuple[Loc, str]] = []
    for index, backend in enumerate(backends):
        route = backend.route
        if route is None:
            continue
        if route in first:
            found.append(
                (
                    ("backends", index, "route"),
                    f'duplicate route "{route}" (already used by backends[{first[route]}])',
                )
            )
        else:
            first[route] = index
    return found


def affinity_warnings(
    has_cookie: bool, backends: Sequence[Backend], doc: YamlDocument, file: str
) -> list[Problem]:
    """guard's affinity cookie names a backend's route: without routes it is never set."""
    if not has_cookie or any(b.route is not None for b in backends):
        return []
    message = "no backend has a route: the cookie is never set (add backends[].route)"
    return [Problem(file, doc.line_of(("sticky_cookie",)), "sticky_cookie", message)]


def method_warnings(rules: Sequence[Rule], doc: YamlDocument, file: str) -> list[Problem]:
    """A method outside the registered set is allowed (an extension method) but is more
    often a typo: say so, with the nearest registered method when there is one."""
    found: list[Problem] = []
    for index, rule in enumerate(rules):
        for position, method in enumerate(rule.methods or ()):
            if method in KNOWN_METHODS:
                continue
            loc: Loc = ("rules", index, "methods", position)
            message = f'"{method}" is not a registered HTTP method'
            close = difflib.get_close_matches(method, sorted(KNOWN_METHODS), n=1, cutoff=0.75)
            if close:
                message += f' (did you mean "{close[0]}"?)'
            found.append(Problem(file, doc.line_of(loc), key_path(loc), message))
    return found
