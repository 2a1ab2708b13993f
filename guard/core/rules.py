"""Rule patterns compiled once per config, and the first-match-wins rule table.

Patterns: '*' matches within one segment (so '/shop/*.jsp' works), a '**' segment matches
any number of segments, and '/x/**' also matches '/x' itself. Patterns are matched against
canonical paths (guard.core.paths), case-sensitively.

match() must not cost more as rules are added: rules are indexed by the literal first
segment of their pattern. A path looks up only the rules for its own first segment, plus
the rules whose first segment is a wildcard, which appear in every list in config order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from guard.core.bucket import ClientBuckets, TokenBucket
from guard.core.state import Counter
from guard.core.stats import RuleStats

Matcher = Callable[[str], bool]


@dataclass(slots=True, eq=False)
class CompiledRule:
    """A config rule with its live objects. Identity equality: rules are hashed by object.
    Not frozen: in cluster mode the lease manager sets ``max_active`` in place."""

    name: str
    index: int  # position in config order; the default rule comes last
    methods: frozenset[str] | None  # None: any method
    max_active: int | None  # this worker's share of the rule ceiling (cluster: its lease)
    rate_per_second: float | None  # this worker's share of the rate
    burst: int  # bucket capacity (0 without a rate)
    per_client: bool
    reject: bool  # action == "reject": JSON refusals even for browsers
    bypass: bool
    block: bool
    counter: Counter
    stats: RuleStats
    bucket: TokenBucket | None  # rule-wide bucket
    client_buckets: ClientBuckets | None  # per_client buckets
    pattern: str = "/**"
    rate_text: str | None = None  # as configured ("200/s"), for /status
    reserve: int = 0  # this worker's share of the slots reserved for this rule alone


def default_rule(index: int, counter: Counter, stats: RuleStats) -> CompiledRule:
    """The implicit last rule: no limits, never blocks, never "reject"."""
    return CompiledRule(
        name="default",
        index=index,
        methods=None,
        max_active=None,
        rate_per_second=None,
        burst=0,
        per_client=False,
        reject=False,
        bypass=False,
        block=False,
        counter=counter,
        stats=stats,
        bucket=None,
        client_buckets=None,
    )


def match_methods(methods: Collection[str] | None) -> frozenset[str] | None:
    """The methods a rule matches: as configured, plus HEAD wherever GET is listed (servlet
    containers run doGet for HEAD, so a GET ceiling or block must cover it, as nginx's
    ``limit_except GET`` does). None: every method."""
    if methods is None:
        return None
    listed = frozenset(methods)
    return listed | {"HEAD"} if "GET" in listed else listed


def compile_pattern(pattern: str) -> Matcher:
    """A predicate on canonical paths. Literal and literal-prefix patterns avoid regexes."""
    if not pattern.startswith("/"):
        raise ValueError(f"rule pattern must start with '/': {pattern!r}")
    if "*" not in pattern:
        return pattern.__eq__
    segments = pattern.split("/")[1:]
    if segments[-1] == "**" and "*" not in "".join(segments[:-1]):
        prefix = "/" + "/".join(segments[:-1]) if len(segments) > 1 else ""
        slash_prefix = prefix + "/"
        return lambda path: path == prefix or path.startswith(slash_prefix)
    regex = "".join(
        "(?:/.*)?" if seg == "**" else "/" + "[^/]*".join(map(re.escape, seg.split("*")))
        for seg in segments
    )
    fullmatch = re.compile(regex, re.DOTALL).fullmatch
    return lambda path: fullmatch(path) is not None


def _first_segment(path: str) -> str:
    end = path.find("/", 1)
    return path[1:] if end < 0 else path[1:end]


Candidate = tuple[frozenset[str] | None, Matcher | None, CompiledRule]
"""(methods, path predicate or None when every path of its index list matches, rule)."""


class RuleTable:
    """First match in config order wins; ``default`` when nothing matches."""

    __slots__ = ("_index", "_wild", "default", "rules")

    def __init__(self, rules: Sequence[CompiledRule], default: CompiledRule) -> None:
        self.rules = tuple(rules)
        self.default = default
        entries = [(_index_key(r.pattern), r) for r in rules]
        keys = {key for key, _ in entries if key is not None}
        # Wildcard-first rules join every list at their config position: order is kept.
        self._index: dict[str, tuple[Candidate, ...]] = {
            key: tuple(_candidate(r, k) for k, r in entries if k is None or k == key)
            for key in keys
        }
        self._wild = tuple(_candidate(r, None) for k, r in entries if k is None)

    def match(self, method: str, path: str) -> CompiledRule:
        end = path.find("/", 1)
        first = path[1:] if end < 0 else path[1:end]
        for methods, matches, rule in self._index.get(first, self._wild):
            if (methods is None or method in methods) and (matches is None or matches(path)):
                return rule
        return self.default


def _candidate(rule: CompiledRule, key: str | None) -> Candidate:
    if key is not None and rule.pattern == f"/{key}/**":
        # The commonest pattern: every path filed under this key matches; skip the test.
        return (rule.methods, None, rule)
    return (rule.methods, compile_pattern(rule.pattern), rule)


def _index_key(pattern: str) -> str | None:
    """The literal first segment of a pattern, or None when it holds a wildcard."""
    first = _first_segment(pattern)
    return None if "*" in first else first
