"""guard's admission core: pure policy, no I/O, time injected. See docs/DESIGN.md."""

from guard.core.admission import Admission, BackendSlot, Refusal, Ticket, share_of
from guard.core.bucket import ClientBuckets, TokenBucket
from guard.core.clock import Clock, FakeClock
from guard.core.paths import BadPath, CanonicalTarget, canonicalize
from guard.core.rules import CompiledRule, RuleTable, compile_pattern
from guard.core.snapshot import (
    BackendView,
    DurationView,
    PairView,
    RuleView,
    SiteView,
    Snapshot,
    UpstreamErrorView,
    merge,
)
from guard.core.spec import BackendSpec, ConfigSpec, LimitsSpec, RateSpec, RuleSpec
from guard.core.state import Counter, CounterKey, Health, MemoryState, State
from guard.core.stats import DEFAULT_BOUNDS, OUTCOMES, Histogram, Outcome, RuleStats

__all__ = [
    "DEFAULT_BOUNDS",
    "OUTCOMES",
    "Admission",
    "BackendSlot",
    "BackendSpec",
    "BackendView",
    "BadPath",
    "CanonicalTarget",
    "ClientBuckets",
    "Clock",
    "CompiledRule",
    "ConfigSpec",
    "Counter",
    "CounterKey",
    "DurationView",
    "FakeClock",
    "Health",
    "Histogram",
    "LimitsSpec",
    "MemoryState",
    "Outcome",
    "PairView",
    "RateSpec",
    "Refusal",
    "RuleSpec",
    "RuleStats",
    "RuleTable",
    "RuleView",
    "SiteView",
    "Snapshot",
    "State",
    "Ticket",
    "TokenBucket",
    "UpstreamErrorView",
    "canonicalize",
    "compile_pattern",
    "merge",
    "share_of",
]
