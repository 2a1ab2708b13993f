"""Configuration problems: pydantic's error list -> ``file:line: key.path: message``.

pydantic speaks in ``loc`` tuples and its own wording ("Input should be a valid
integer"); operators need the YAML line and what to write instead. This module
owns that translation so the models stay declarative.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from guard.config.reader import Loc, YamlDocument
from guard.config.types import shown

# The error type our model validators use to report several keys in one raise.
CONFLICTS = "guard_conflicts"

_GOT = ", got {got}"
_WORDING = {
    "missing": "is required",
    "int_type": "expected a whole number" + _GOT,
    "int_parsing": "expected a whole number" + _GOT,
    "int_from_float": "expected a whole number" + _GOT,
    "float_type": "expected a number" + _GOT,
    "float_parsing": "expected a number" + _GOT,
    "bool_type": "expected true or false" + _GOT,
    "bool_parsing": "expected true or false" + _GOT,
    "string_type": "expected text" + _GOT,
    "model_type": "expected a mapping" + _GOT,
    "model_attributes_type": "expected a mapping" + _GOT,
    "dict_type": "expected a mapping" + _GOT,
    "tuple_type": "expected a list" + _GOT,
    "list_type": "expected a list" + _GOT,
    "too_short": "expected at least {min_length} entry, got none",
    "greater_than_equal": "expected a number >= {ge}" + _GOT,
    "less_than_equal": "expected a number <= {le}" + _GOT,
    "literal_error": "expected {expected}" + _GOT,
    "path_type": "expected a file path" + _GOT,
}


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int  # 1-based YAML line; 0 when the file itself could not be read
    key: str  # dotted path with indices, e.g. "rules[1].rate"
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


class ConfigError(Exception):
    """Every problem found in one configuration file, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        # The same problem can be found twice (by a model validator and by the raw
        # scan that runs when validation stopped early); show it once.
        unique = dict.fromkeys(problems)
        self.problems: list[Problem] = sorted(unique, key=lambda p: (p.line, p.key))
        super().__init__("\n".join(str(p) for p in self.problems))


def problems_as_json(err: ConfigError) -> list[dict[str, Any]]:
    """The problems as JSON-ready dicts (file, line, key, message) for POST /reload."""
    return [asdict(problem) for problem in err.problems]


def key_path(loc: Loc) -> str:
    """('rules', 1, 'rate') -> 'rules[1].rate'; the document itself is 'config'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "config"


def conflicts(found: Sequence[tuple[Loc, str]]) -> PydanticCustomError:
    """One error carrying several (key suffix, message) pairs, expanded by ``translate``."""
    return PydanticCustomError(
        CONFLICTS, "{count} conflicting settings", {"conflicts": tuple(found), "count": len(found)}
    )


def duplicate_names(section: str, names: Sequence[object]) -> list[tuple[Loc, str]]:
    """(index, 'name') suffixes of every name already used earlier in ``section``."""
    first: dict[str, int] = {}
    found: list[tuple[Loc, str]] = []
    for index, name in enumerate(names):
        if not isinstance(name, str):
            continue
        if name in first:
            found.append(
                (
                    (index, "name"),
                    f'duplicate name "{name}" (already used by {section}[{first[name]}])',
                )
            )
        else:
            first[name] = index
    return found


def raw_duplicate_problems(doc: YamlDocument, file: str) -> list[Problem]:
    """Duplicate names found in the raw data.

    The model's own check only runs when every item of the list is valid; this scan
    makes sure a duplicate is still reported alongside other problems.
    """
    problems: list[Problem] = []
    data = doc.data if isinstance(doc.data, dict) else {}
    for section in ("backends", "rules"):
        items = data.get(section)
        if not isinstance(items, list):
            continue
        names = [item.get("name") if isinstance(item, dict) else None for item in items]
        for suffix, message in duplicate_names(section, names):
            loc = (section, *suffix)
            problems.append(Problem(file, doc.line_of(loc), key_path(loc), message))
    return problems


def translate(
    exc: ValidationError, file: str, doc: YamlDocument, root: type[BaseModel]
) -> Iterator[Problem]:
    """pydantic errors -> Problems with YAML lines and our wording."""
    errors = exc.errors(include_url=False)
    for err in errors:
        loc: Loc = tuple(err["loc"])
        if err["type"] == "too_short" and _has_inner_error(errors, loc):
            continue  # pydantic counts only the valid items; the invalid ones say why
        if err["type"] == CONFLICTS:
            for suffix, message in err.get("ctx", {})["conflicts"]:
                full = (*loc, *suffix)
                yield Problem(file, doc.line_of(full), key_path(full), message)
        else:
            yield Problem(file, doc.line_of(loc), key_path(loc), _message(err, root))


def _has_inner_error(errors: list[ErrorDetails], loc: Loc) -> bool:
    return any(len(e["loc"]) > len(loc) and tuple(e["loc"][: len(loc)]) == loc for e in errors)


def _message(err: ErrorDetails, root: type[BaseModel]) -> str:
    if err["type"] == "extra_forbidden":
        return _unknown_key(err["loc"], root)
    wording = _WORDING.get(err["type"])
    if wording is None:  # our own types already say what they expect
        return err["msg"]
    ctx = {key: str(value).replace("'", '"') for key, value in err.get("ctx", {}).items()}
    return wording.format(**ctx, got=shown(err["input"]))


def _unknown_key(loc: tuple[int | str, ...], root: type[BaseModel]) -> str:
    """'unknown key', with the closest known key when the typo is near one."""
    known = _fields_at(root, loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.75)
    return f'unknown key (did you mean "{close[0]}"?)' if close else "unknown key"


def _fields_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return []
        if isinstance(part, str):
            field = model.model_fields.get(part)
            model = _model_in(field.annotation) if field else None
    return list(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class inside an annotation like ``tuple[Rule, ...]`` or ``Health | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (tuple, typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
