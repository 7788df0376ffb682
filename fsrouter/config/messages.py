"""Turn pydantic errors into :class:`ConfigIssue` with our paths, marks and plain wording.

Pydantic locations carry union tags (``type=agent``) and ``[key]`` for bad mapping keys; we
walk them against the loaded data to get the path the operator wrote, e.g.
``('numbers', 1, 'type=agent', 'agnet')`` -> ``numbers[1].agnet``.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from fsrouter.config.errors import ConfigIssue
from fsrouter.config.schema import TAG_PREFIX, Config
from fsrouter.config.yamlmarks import Marks, Path

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MISSING = object()


def format_path(path: Path) -> str:
    """``('numbers', 1, 'options', 0, 'digit')`` -> ``numbers[1].options[0].digit``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text or "(root)"


def issue_at(file: str, marks: Marks, path: Path, message: str) -> ConfigIssue:
    """An issue about the value at ``path`` (reported at its key)."""
    line, column = marks.for_value(path)
    return ConfigIssue(file, line, column, format_path(path), message)


def translate(errors: list[ErrorDetails], data: Any, marks: Marks, file: str) -> list[ConfigIssue]:
    """All pydantic errors as issues, in file order, without duplicates."""
    issues = {_translate_one(error, data, marks, file) for error in errors}
    return sorted(issues)


def _translate_one(error: ErrorDetails, data: Any, marks: Marks, file: str) -> ConfigIssue:
    kind = error["type"]
    path, found, value = _data_path(error["loc"], data)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _bad_type(error, path, value, marks, file)
    if kind == "missing" or not found:
        line, column = marks.for_missing(path[:-1])
        return ConfigIssue(file, line, column, format_path(path), "required field missing")
    return issue_at(file, marks, path, _message(error, _model_at(error["loc"][:-1])))


def _data_path(loc: tuple[int | str, ...], data: Any) -> tuple[Path, bool, Any]:
    """Our path for a pydantic loc, whether it exists in the data, and the value there."""
    path: list[str | int] = []
    current = data
    found = True
    for part in loc:
        if isinstance(part, str) and (part.startswith(TAG_PREFIX) or part == "[key]"):
            continue
        path.append(part)
        if found and isinstance(current, dict) and part in current:
            current = current[part]
        elif found and isinstance(current, list) and isinstance(part, int) \
                and 0 <= part < len(current):
            current = current[part]
        else:
            found, current = False, _MISSING
    return tuple(path), found, current


def _bad_type(error: ErrorDetails, path: Path, value: Any, marks: Marks,
              file: str) -> ConfigIssue:
    if not isinstance(value, dict):
        return issue_at(file, marks, path, f"must be a mapping, got {_kind(value)}")
    if "type" not in value:
        line, column = marks.for_missing(path)
        return ConfigIssue(file, line, column, format_path(path + ("type",)),
                           "required field missing")
    expected = re.findall(r"'type=([^']*)'", error.get("ctx", {}).get("expected_tags", ""))
    return issue_at(file, marks, path + ("type",),
                    f"must be one of {', '.join(expected)}, got {_shown(value['type'])}")


def _message(error: ErrorDetails, model: type[BaseModel] | None) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx", {})
    if kind == "extra_forbidden":
        return _unknown_key(str(error["loc"][-1]), model)
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, got {_shown(value)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false, got {_shown(value)}"
    if kind in ("string_type",):
        return f"must be text, got {_kind(value)}"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"must be one of {', '.join(options)}, got {_shown(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, got {_kind(value)}"
    if kind in ("tuple_type", "list_type"):
        return f"must be a list, got {_kind(value)}"
    if kind.startswith("datetime"):
        return f"must be a date and time like 2024-01-06 09:00, got {_shown(value)}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    return str(error["msg"])


def _unknown_key(key: str, model: type[BaseModel] | None) -> str:
    if model is None:
        return "unknown key"
    allowed = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (allowed: {', '.join(sorted(allowed))})"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    if value is None or value is _MISSING:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return f"{value!r}".lower()
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return _shown(value)


# --- which model a location points into (for "did you mean") --------------------------------


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    candidates: list[Any] = [Config]
    for part in loc:
        candidates = [step for tp in candidates for step in _step(tp, part)]
        if not candidates:
            return None
    models = [tp for tp in _flatten(candidates) if _is_model(tp)]
    return models[0] if len(models) == 1 else None


def _step(tp: Any, part: int | str) -> list[Any]:
    result = []
    for option in _flatten([tp]):
        if _is_model(option) and isinstance(part, str):
            result.extend(_field_type(option, part))
        elif typing.get_origin(option) in (tuple, list) and isinstance(part, int):
            result.append(typing.get_args(option)[0])
        elif typing.get_origin(option) is dict and isinstance(part, str) and part != "[key]":
            result.append(typing.get_args(option)[1])
    return result


def _field_type(model: type[BaseModel], part: str) -> list[Any]:
    if part.startswith(TAG_PREFIX):  # a union tag: stay on the model if it is that type
        field = model.model_fields.get("type")
        wanted = part[len(TAG_PREFIX):]
        return [model] if field and wanted in typing.get_args(field.annotation) else []
    for name, field in model.model_fields.items():
        if part in (name, field.alias):
            return [field.annotation]
    return []


def _flatten(types_: list[Any]) -> list[Any]:
    """Unwrap Annotated[...] and unions into the plain candidate types."""
    out: list[Any] = []
    for tp in types_:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            out.extend(_flatten([typing.get_args(tp)[0]]))
        elif origin in (typing.Union, types.UnionType):
            out.extend(_flatten(list(typing.get_args(tp))))
        else:
            out.append(tp)
    return out


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)
