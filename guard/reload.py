"""The answer of a configuration reload, shared by the runtime (which reloads), the admin
app (which reports it on POST /reload) and the ``workers`` supervisor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ReloadResult"]


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """``ok`` with the new config's summary, or not ``ok`` with the problems found.

    Each problem is ``{"file", "line", "key", "message"}``: the fields `guard check` prints.
    """

    ok: bool
    summary: Mapping[str, Any] | None = None
    problems: Sequence[Mapping[str, Any]] = ()
