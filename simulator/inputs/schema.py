"""The one input-reading layer: YAML files into pydantic models, with errors a user can act on.

Every file painpath reads as input (scenarios, cohorts, tornado parameters, the packaged data) goes
through :func:`read_yaml`, which checks the path (it exists, is a regular file and not a FIFO or a
device, its name is not too long), the size (at most :data:`MAX_BYTES`), the encoding (UTF-8), and the
YAML itself: syntax, **duplicate keys** (an error, never "the last one wins"), nesting depth (at most
:data:`MAX_DEPTH`) and the number of values once anchors are expanded (at most :data:`MAX_VALUES`).

This is the only place that turns a pydantic ``ValidationError`` or a YAML error into an
:class:`~simulator.inputs.errors.InputError`. Every input model derives from :class:`Strict`, which forbids
unknown keys (a typo is an error), refuses NaN and infinities in every float field, and refuses a
boolean where a number is expected (``yes`` is not 1.0).
"""

from __future__ import annotations

import os
import re
import stat
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from .errors import InputError

M = TypeVar("M", bound=BaseModel)

MAX_BYTES = 4 * 1024 * 1024
"""Largest input file read (bytes); the packaged clinical model is about 60 kB."""
MAX_DEPTH = 40
"""Deepest nesting of lists and mappings accepted in an input file."""
MAX_VALUES = 200_000
"""Most values (scalars, lists, mappings) in a file once YAML anchors are expanded."""
MAX_NAME_BYTES = 255
"""Longest file or folder name (one path component) most file systems accept, in bytes."""
MAX_PATH_BYTES = 4000
"""Longest path accepted, in bytes."""


# ---- numbers: finite, and never a boolean ------------------------------------------------------

def _matches(ann: Any, leaf: Callable[[Any], bool], into_containers: bool = False) -> bool:
    """True when ``ann`` or a type inside it satisfies ``leaf``, looking through Annotated and unions (and, with
    ``into_containers``, the values of list/tuple/dict at any depth)."""
    if leaf(ann):
        return True
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _matches(typing.get_args(ann)[0], leaf, into_containers)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(a, leaf, into_containers) for a in typing.get_args(ann))
    if into_containers and origin in (dict, list, tuple):
        args = typing.get_args(ann)
        values = args[1:] if origin is dict else args
        return any(a is not Ellipsis and _matches(a, leaf, True) for a in values)
    return False


def _number_leaf(ann: Any) -> bool:
    return ann in (float, int)


def _is_number_type(ann: Any) -> bool:
    """True when ``ann`` is float or int, possibly Annotated, optional or in a union with literals."""
    return _matches(ann, _number_leaf)


def _holds_numbers(ann: Any) -> bool:
    """True when ``ann`` is a number or a list/tuple/dict (at any depth) whose values are numbers."""
    return _matches(ann, _number_leaf, into_containers=True)


def _accepts_bool(ann: Any) -> bool:
    """True when ``ann`` itself admits a boolean (``bool`` or a union with it)."""
    return _matches(ann, lambda a: a is bool)


def _has_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(_has_bool(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_bool(v) for v in value)
    return False


class Strict(BaseModel):
    """Base of every input model: unknown keys, NaN, infinities and booleans-as-numbers are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        if info.field_name is None or not _has_bool(v):
            return v
        ann = cls.model_fields[info.field_name].annotation
        if _accepts_bool(ann):
            return v
        if _is_number_type(ann) and isinstance(v, bool) or not isinstance(v, bool) and _holds_numbers(ann):
            raise ValueError(f"a boolean ({str(v).lower() if isinstance(v, bool) else 'true/false'}) is given "
                             "where a number is expected; write the number itself (e.g. 1 or 0.5)")
        return v


def require_known(values: str | Iterable[str], allowed: Iterable[str], what: str) -> None:
    """Raise ValueError naming the unknown ``what`` and the allowed values (for field validators)."""
    allowed = list(allowed)
    bad = [v for v in ([values] if isinstance(values, str) else values) if v not in allowed]
    if bad:
        shown = bad[0] if len(bad) == 1 else bad
        raise ValueError(f"unknown {what} {shown!r}; use one of: {', '.join(allowed)}")



def check_shares(values: dict[str, float], allowed: Iterable[str], what: str, field: str,
                 sums_to_one: bool = True) -> dict[str, float]:
    """Validate a mix of shares keyed by name (for field validators): every key a known ``what``, every share a
    probability in [0, 1], and (``sums_to_one``) the shares summing to 1 within 1e-6.

    Returns ``values`` unchanged; raises ValueError naming ``field`` and the fix."""
    require_known(list(values), allowed, what)
    for name, p in values.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{field}.{name} is {p}, a probability outside [0, 1]")
    if sums_to_one:
        total = sum(values.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"{field} must sum to 1, got {total:.6g}; rescale the shares")
    return values


# ---- paths ----------------------------------------------------------------------------------------

def check_path_text(path: str | Path, *, file: str | None = None, field: str | None = None) -> None:
    """Raise InputError for a path that no file system accepts: empty, a NUL byte, a name too long."""
    text = str(path)
    where = {"file": file, "field": field} if (file or field) else {"file": None, "field": None}
    if not text.strip():
        raise InputError("the path is empty", **where, fix="give the path of a file")
    if "\x00" in text:
        raise InputError("the path contains a NUL character", **where, fix="remove it from the path")
    raw = os.fsencode(text)
    if len(raw) > MAX_PATH_BYTES:
        raise InputError(f"the path is {len(raw)} bytes long, above the {MAX_PATH_BYTES} accepted", **where,
                         fix="use a shorter path")
    for part in Path(text).parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise InputError(f"the name '{part[:40]}...' is {len(os.fsencode(part))} bytes long, above the "
                             f"{MAX_NAME_BYTES} a file system accepts", **where, fix="use a shorter file or folder name")


def _stat(path: Path, shown: str) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        raise InputError("the file does not exist", file=shown,
                         fix="check the path (relative paths are taken from the current directory)") from None
    except NotADirectoryError:
        raise InputError("a part of the path is a file, not a folder", file=shown, fix="check the path") from None
    except PermissionError:
        raise InputError("the file cannot be read (permission denied)", file=shown,
                         fix="check the file's permissions") from None
    except OSError as exc:
        raise InputError(f"the file cannot be opened ({exc.strerror or exc})", file=shown,
                         fix="check the path") from None


# ---- YAML -----------------------------------------------------------------------------------------

class _YamlLimit(yaml.YAMLError):
    def __init__(self, problem: str, mark: Any, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark
        self.fix = fix


_FLATTEN = "flatten the structure (no input painpath reads nests this deep)"


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and nesting deeper than MAX_DEPTH."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D401 - PyYAML hook
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _YamlLimit(f"lists and mappings are nested more than {MAX_DEPTH} deep",
                                 self.peek_event().start_mark, _FLATTEN)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    key = key_node.value
                    if key in seen:
                        raise _YamlLimit(f"the key '{key}' appears twice in the same mapping (the second would "
                                         "silently replace the first)", key_node.start_mark,
                                         f"keep one '{key}' in this mapping")
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _count_values(data: Any) -> None:
    """Raise _YamlLimit when the loaded data (anchors expanded) holds more than MAX_VALUES values."""
    n = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        n += 1
        if n > MAX_VALUES:
            raise _YamlLimit(f"the file expands to more than {MAX_VALUES:,} values (anchors and aliases "
                             "included)", None, "write the values out, without aliases that multiply them")
        if depth > MAX_DEPTH:
            raise _YamlLimit(f"lists and mappings are nested more than {MAX_DEPTH} deep (through aliases)", None,
                             _FLATTEN)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def parse_yaml(text: str, shown: str) -> Any:
    """Parse YAML text (from a file shown as ``shown``) with the limits of :func:`read_yaml`."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
        _count_values(data)
        return data
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if isinstance(exc, _YamlLimit):
            raise InputError(f"{problem}{where}", file=shown, fix=exc.fix) from None
        raise InputError(f"the file is not valid YAML{where} ({problem})", file=shown,
                         fix="correct the YAML syntax there (indentation, a missing colon or an unclosed quote)"
                         ) from None
    except RecursionError:  # pragma: no cover - the depth limit stops this first
        raise InputError(f"lists and mappings are nested more than {MAX_DEPTH} deep", file=shown,
                         fix="flatten the structure") from None


def read_yaml(path: str | Path) -> Any:
    """Read a YAML input file; raise InputError for a bad path, a non-file, size, encoding or YAML problem."""
    shown = str(path)
    check_path_text(path, file=shown[:300])
    p = Path(path)
    st = _stat(p, shown)
    if stat.S_ISDIR(st.st_mode):
        raise InputError("this is a folder, not a YAML file", file=shown, fix="name a .yaml file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "not a regular file (a device or a socket)"
        raise InputError(f"this is {kind}, not a YAML file", file=shown, fix="name a regular .yaml file")
    if st.st_size > MAX_BYTES:
        raise InputError(f"the file is {st.st_size:,} bytes, above the {MAX_BYTES:,} accepted", file=shown,
                         fix="an input file this large is a mistake; check that this is the right file")
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise InputError(f"the file cannot be read ({exc.strerror or exc})", file=shown,
                         fix="check the file and its permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the file is not UTF-8 text", file=shown, fix="save it as UTF-8 YAML") from None
    return parse_yaml(text, shown)


# ---- pydantic errors -> InputError --------------------------------------------------------------

def _fix_for(err: dict[str, Any], model: type[BaseModel]) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "remove or rename this key; check its spelling against the documented keys"
    if kind == "missing":
        return "add this key"
    if kind == "finite_number":
        return "give a finite number (NaN and infinities are not values)"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return f"use a value {'>=' if kind == 'greater_than_equal' else '>'} {bound}"
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        return f"use a value {'<=' if kind == 'less_than_equal' else '<'} {bound}"
    if kind == "literal_error":
        return f"use one of {ctx.get('expected', 'the allowed values')}"
    if kind in ("string_too_long", "too_long"):
        return f"use at most {ctx.get('max_length', 'the allowed')} {'characters' if kind.startswith('string') else 'items'}"
    if kind in ("string_too_short", "too_short"):
        return f"give at least {ctx.get('min_length', 1)} {'character' if kind.startswith('string') else 'item'}(s)"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind.endswith("_from_float"):
        return "give a value of the expected type"
    if kind == "value_error":
        msg = str(err.get("msg", ""))
        if "; " in msg:
            return _strip_fix(msg.rsplit("; ", 1)[1])
        return "correct the value as the message says"
    return "correct the value"


def _strip_fix(text: str) -> str:
    """A fix without a leading 'fix:' (messages carried through ValueError keep one)."""
    t = text.strip()
    return t[4:].strip() if t.lower().startswith("fix:") else t


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_UNION_TAG = re.compile(r"^(float|int|str|bool|none|(list|dict|tuple|set|literal|function-[a-z]+|constrained-[a-z]+|"
                        r"tagged-union|union)\[.*\])$")
"""Location parts pydantic adds for the member of a union it tried (``low.float``): not the user's field names."""


def validation_to_input_error(exc: ValidationError, file: str, model: type[BaseModel],
                              prefix: str = "") -> InputError:
    """Turn the first pydantic error into an InputError naming file, field and fix."""
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()) if not _UNION_TAG.match(str(x)))
    field = f"{prefix}.{loc}".strip(".") if prefix else loc
    msg = err.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err.get("type") == "value_error" and "; " in msg:
        msg = msg.rsplit("; ", 1)[0]
    value = err.get("input")
    shown = ""
    if err.get("type") != "missing" and not isinstance(value, dict | list):
        shown = f" (got {_shown(value)})"
    more = len(exc.errors()) - 1
    tail = f"; {more} more problem(s) in the same file" if more > 0 else ""
    fix = _fix_for(err, model)
    if field.rsplit(".", 1)[-1] == "patients" and err.get("type") == "less_than_equal":
        fix += "; for more patients use replications or several seeds (README, Large cohorts)"
    return InputError(f"{msg}{shown}{tail}", file=file, field=field or None, fix=fix)


def parse_model(data: Any, model: type[M], file: str, prefix: str = "") -> M:
    """Validate already-loaded data against a model, raising InputError on failure."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of keys to values, got {type(data).__name__}", file=file,
                         field=prefix or None, fix="write the content as 'key: value' lines")
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise InputError(f"the key {_shown(bad_keys[0])} is not a name", file=file, field=prefix or None,
                         fix="write keys as words (quote them if they look like numbers)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_to_input_error(exc, file, model, prefix) from None
    except RecursionError:  # pragma: no cover - read_yaml's depth limit stops this first
        raise InputError("the content is nested too deeply", file=file, fix="flatten the structure") from None


def load_model(path: str | Path, model: type[M]) -> M:
    """Read a YAML file and validate it against ``model``."""
    return parse_model(read_yaml(path), model, str(path))
