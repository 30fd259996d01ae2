"""Loading YAML into pydantic models, with errors a user can act on.

This is the only place that turns a pydantic ``ValidationError`` or a YAML syntax error into an
:class:`~simulator.errors.InputError`. Every input model derives from :class:`Strict`, which forbids
unknown keys, so a typo is an error rather than a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import InputError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every input model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def require_known(values: str | Iterable[str], allowed: Iterable[str], what: str) -> None:
    """Raise ValueError naming the unknown ``what`` and the allowed values (for field validators)."""
    allowed = list(allowed)
    bad = [v for v in ([values] if isinstance(values, str) else values) if v not in allowed]
    if bad:
        shown = bad[0] if len(bad) == 1 else bad
        raise ValueError(f"unknown {what} {shown!r}; use one of: {', '.join(allowed)}")


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file; raise InputError for a missing file or malformed YAML."""
    p = Path(path)
    if not p.exists():
        raise InputError("the file does not exist", file=str(path),
                         fix="check the path (relative paths are taken from the current directory)")
    if p.is_dir():
        raise InputError("this is a folder, not a YAML file", file=str(path), fix="name a .yaml file")
    try:
        with p.open("r", encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"the file is not valid YAML{where} ({problem})", file=str(path),
                         fix="correct the YAML syntax there (indentation, a missing colon or an unclosed quote)"
                         ) from None
    except UnicodeDecodeError:
        raise InputError("the file is not UTF-8 text", file=str(path), fix="save it as UTF-8 YAML") from None


def _fix_for(err: dict[str, Any], model: type[BaseModel]) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "remove or rename this key; check its spelling against the documented keys"
    if kind == "missing":
        return "add this key"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return f"use a value {'>=' if kind == 'greater_than_equal' else '>'} {bound}"
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        return f"use a value {'<=' if kind == 'less_than_equal' else '<'} {bound}"
    if kind == "literal_error":
        return f"use one of {ctx.get('expected', 'the allowed values')}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "give a value of the expected type"
    if kind == "value_error":
        msg = str(err.get("msg", ""))
        if "; " in msg:
            return msg.rsplit("; ", 1)[1]
        return "correct the value as the message says"
    return "correct the value"


def validation_to_input_error(exc: ValidationError, file: str, model: type[BaseModel],
                              prefix: str = "") -> InputError:
    """Turn the first pydantic error into an InputError naming file, field and fix."""
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    field = f"{prefix}.{loc}".strip(".") if prefix else loc
    msg = err.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err.get("type") == "value_error" and "; " in msg:
        msg = msg.rsplit("; ", 1)[0]
    value = err.get("input")
    shown = ""
    if err.get("type") != "missing" and not isinstance(value, dict | list):
        shown = f" (got {value!r})"
    more = len(exc.errors()) - 1
    tail = f"; {more} more problem(s) in the same file" if more > 0 else ""
    return InputError(f"{msg}{shown}{tail}", file=file, field=field or None, fix=_fix_for(err, model))


def parse_model(data: Any, model: type[M], file: str, prefix: str = "") -> M:
    """Validate already-loaded data against a model, raising InputError on failure."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of keys to values, got {type(data).__name__}", file=file,
                         field=prefix or None, fix="write the content as 'key: value' lines")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_to_input_error(exc, file, model, prefix) from None


def load_model(path: str | Path, model: type[M]) -> M:
    """Read a YAML file and validate it against ``model``."""
    return parse_model(read_yaml(path), model, str(path))
