"""guard's configuration, one concern per module, re-exported here.

- ``models``: the top-level Config, LoadedConfig, parse_config and load_config
- ``sections``: Backend, Rule, Health, Limits, Timeouts, AccessLog
- ``types``: value types (durations, sizes, HostPort, networks, rates, names, patterns)
- ``reader``: the YAML reader that keeps the line of every value
- ``errors``: Problem, ConfigError, pydantic errors -> ``file:line: key: message``
- ``summary``: the `guard check` screen

Callers import from ``guard.config``; the submodules are its internals.
"""

from guard.config.errors import ConfigError, Problem, problems_as_json
from guard.config.models import Config, LoadedConfig, load_config, parse_config
from guard.config.sections import (
    AccessLog,
    Backend,
    Health,
    Limits,
    Rule,
    StickyCookie,
    Timeouts,
)
from guard.config.summary import summarize
from guard.config.types import HostPort, Rate

__all__ = [  # noqa: RUF022 - grouped: models, then errors, then functions
    "AccessLog",
    "Backend",
    "Config",
    "Health",
    "HostPort",
    "Limits",
    "LoadedConfig",
    "Rate",
    "Rule",
    "StickyCookie",
    "Timeouts",
    "ConfigError",
    "Problem",
    "load_config",
    "parse_config",
    "problems_as_json",
    "summarize",
]
