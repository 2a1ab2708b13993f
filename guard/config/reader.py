"""YAML text -> plain Python data plus the line of every key and value.

PyYAML's ``safe_load`` throws line numbers away and silently keeps the last of
two duplicate keys, so we walk the composed node tree ourselves: every value is
built with SafeLoader's own scalar constructors (so ``true``, ``5``, ``1.5``,
``null`` mean what YAML says) while we record where each value sits and report
duplicate keys instead of hiding them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Loc = tuple[str | int, ...]

MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class YamlIssue:
    """A problem found while reading the YAML itself (before validation)."""

    loc: Loc
    line: int
    message: str


@dataclass(slots=True)
class YamlDocument:
    """The document's data, the line of each value by location, and any issues."""

    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    issues: list[YamlIssue] = field(default_factory=list)

    def line_of(self, loc: Loc) -> int:
        """Line of the value at ``loc``, or of the nearest enclosing value that exists.

        A missing key therefore points at its parent mapping, as promised to users.
        """
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return 1


def read_yaml(text: str) -> YamlDocument:
    """Compose ``text`` and convert it; a syntax error becomes one issue with its line."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        return YamlDocument(data=None, issues=[_syntax_issue(exc)])
    except yaml.YAMLError as exc:  # errors without a mark (rare): still one problem
        return YamlDocument(data=None, issues=[YamlIssue((), 1, str(exc))])
    finally:
        loader.dispose()
    doc = YamlDocument(data=None)
    if root is None:  # an empty file is an empty mapping; required keys are reported later
        doc.data = {}
        doc.lines[()] = 1
        return doc
    doc.lines[()] = root.start_mark.line + 1
    doc.data = _Walker(loader, doc).value(root, (), frozenset())
    return doc


def _syntax_issue(exc: yaml.MarkedYAMLError) -> YamlIssue:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    parts = [p for p in (exc.context, exc.problem) if p]
    return YamlIssue((), line, "invalid YAML: " + ", ".join(parts))


class _Walker:
    """Turns nodes into dicts/lists/scalars, filling ``doc.lines`` and ``doc.issues``."""

    def __init__(self, loader: yaml.SafeLoader, doc: YamlDocument) -> None:
        self.loader = loader
        self.doc = doc

    def value(self, node: yaml.Node, loc: Loc, active: frozenset[int]) -> Any:
        if id(node) in active:  # an alias pointing at its own ancestor
            self._issue(loc, node, "recursive YAML alias")
            return None
        active = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc, active)
        if isinstance(node, yaml.SequenceNode):
            return [
                self._item(child, (*loc, index), active) for index, child in enumerate(node.value)
            ]
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:  # unknown tags like '!!python/name' or '!env'
            self._issue(loc, node, f"invalid YAML value: {exc.problem}")
            return None

    def _item(self, node: yaml.Node, loc: Loc, active: frozenset[int]) -> Any:
        self.doc.lines[loc] = node.start_mark.line + 1
        return self.value(node, loc, active)

    def _mapping(self, node: yaml.MappingNode, loc: Loc, active: frozenset[int]) -> Any:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:  # '<<: *defaults' is applied after explicit keys
                merged.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._issue(loc, key_node, "keys must be plain names")
                continue
            # Keys are config names: take the raw text so that 'on' or 'null' stay names.
            key = str(key_node.value)
            key_line = key_node.start_mark.line + 1
            if key in first_line:
                self.doc.issues.append(
                    YamlIssue(
                        (*loc, key),
                        key_line,
                        f"duplicate key (first set on line {first_line[key]})",
                    )
                )
                continue
            first_line[key] = key_line
            self.doc.lines[(*loc, key)] = _value_line(key_node, value_node)
            result[key] = self.value(value_node, (*loc, key), active)
        for source in merged:
            self._merge(result, source, loc, active)
        return result

    def _merge(
        self, result: dict[str, Any], source: yaml.Node, loc: Loc, active: frozenset[int]
    ) -> None:
        sources = source.value if isinstance(source, yaml.SequenceNode) else [source]
        for item in sources:
            # Walk into a scratch document so merged lines never overwrite explicit ones.
            scratch = YamlDocument(data=None)
            data = _Walker(self.loader, scratch).value(item, loc, active)
            self.doc.issues.extend(scratch.issues)
            if not isinstance(data, dict):
                self._issue(loc, item, "'<<' merges mappings only")
                continue
            for key, value in data.items():
                if key in result:  # explicit keys win, as YAML specifies
                    continue
                result[key] = value
                prefix = (*loc, key)
                for sub, line in scratch.lines.items():
                    if sub[: len(prefix)] == prefix:
                        self.doc.lines[sub] = line

    def _issue(self, loc: Loc, node: yaml.Node, message: str) -> None:
        self.doc.issues.append(YamlIssue(loc, node.start_mark.line + 1, message))


def _value_line(key_node: yaml.Node, value_node: yaml.Node) -> int:
    """The line to blame for a value: its own for scalars, its key's otherwise.

    An empty value ('rate:') and a block collection both start elsewhere than the
    key that names them, and the key's line is the one a reader looks for.
    """
    if isinstance(value_node, yaml.ScalarNode) and value_node.value != "":
        return int(value_node.start_mark.line) + 1
    return int(key_node.start_mark.line) + 1
