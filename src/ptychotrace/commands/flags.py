"""CLI flags generated from the config models' fields and descriptions.

Every field of the chosen ``RunConfig`` sections becomes ``--field-name`` (with a section prefix
where asked, e.g. ``--baseline-iterations``; a name already taken by an earlier section gets its
section name as prefix, e.g. ``--inference-batch-size``). Booleans get ``--x/--no-x``; Literal and
enum fields get choices; nested models (loss weights) get ``--loss-weights-nll`` and so on. Every
flag defaults to "not given" (None), so the scenario, profile and config file decide unless the
flag is given; :func:`overrides_from_flags` returns the dotted overrides of the given flags.
Validation (ranges) is the models' own, at resolve time, with the field named in the error.
A field added to config.py gets its flag here without any other change.
"""

from __future__ import annotations

import argparse
import enum
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ..config import RunConfig

__all__ = ["add_config_flags", "overrides_from_flags", "FLAG_MAP_ATTR"]

#: Attribute of the parser namespace defaults holding {dest: dotted config path}.
FLAG_MAP_ATTR = "_config_flags"


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner type, optional?) of ``X | None``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _checked(kind: type, metadata: list) -> Any:
    """An argparse type that converts with ``kind`` and enforces the field's bounds
    (annotated_types Gt/Ge/Lt/Le), so a bad value is refused at the flag, naming the bound."""
    import annotated_types as at

    bounds = [(getattr(m, attr), op, sym) for m in metadata for cls, attr, op, sym in (
        (at.Gt, "gt", lambda v, b: v > b, ">"), (at.Ge, "ge", lambda v, b: v >= b, ">="),
        (at.Lt, "lt", lambda v, b: v < b, "<"), (at.Le, "le", lambda v, b: v <= b, "<="))
        if isinstance(m, cls)]

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        for bound, op, sym in bounds:
            if not op(value, bound):
                raise argparse.ArgumentTypeError(f"must be {sym} {bound:g}, got {text}")
        return value

    convert.__name__ = kind.__name__      # argparse names the type in its messages
    return convert


def _kwargs(annotation: Any, metadata: list | None = None) -> dict[str, Any] | None:
    """argparse keyword arguments for a field type, or None for a nested model."""
    inner, _ = _unwrap(annotation)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return None
    if inner is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(inner) is tuple:                 # tuple[X, ...]: one or more values
        item = _kwargs(typing.get_args(inner)[0]) or {"type": str}
        return {**item, "nargs": "+"}
    if typing.get_origin(inner) is Literal:
        values = typing.get_args(inner)
        return {"choices": list(values), "type": type(values[0])}
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        return {"choices": [m.value for m in inner]}
    if inner in (int, float):
        return {"type": _checked(inner, list(metadata or []))}
    if inner is str:
        return {"type": str}
    if inner is Path:
        return {"type": str}
    return {"type": str}


def _metavar(kind) -> str:
    return {int: "INT", float: "NUMBER"}.get(kind, "TEXT")


def _fields(model: type[BaseModel], path: str, name: str):
    """(dotted path, flag stem, FieldInfo) of every leaf field, nested models flattened."""
    for field, info in model.model_fields.items():
        inner, _ = _unwrap(info.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            yield from _fields(inner, f"{path}.{field}", f"{name}{field}-")
        else:
            yield f"{path}.{field}", f"{name}{field}", info


def add_config_flags(parser: argparse.ArgumentParser, sections: dict[str, str], *,
                     exclude: set[str] = frozenset(), title: str | None = None,
                     taken: set[str] | None = None) -> dict[str, str]:
    """Add a flag for every field of ``sections`` ({section: flag prefix}) except the dotted paths
    in ``exclude``. Flags already on the parser are kept (explicit flags win) and listed in
    ``taken``. Returns {dest: dotted path}, also stored on the parser's defaults."""
    existing = {s for a in parser._actions for s in a.option_strings}
    taken = set(taken or ())
    mapping: dict[str, str] = dict(parser.get_default(FLAG_MAP_ATTR) or {})
    for section, prefix in sections.items():
        model = RunConfig.model_fields[section].annotation
        group = parser.add_argument_group(title or f"{section} (config section '{section}')")
        for path, stem, info in _fields(model, section, prefix):
            if path in exclude or section == "schema_version":
                continue
            flag = "--" + stem.replace("_", "-")
            if flag in existing or flag in taken:
                flag = "--" + f"{section}-{stem.removeprefix(prefix)}".replace("_", "-")
            if flag in existing or flag in taken:
                continue
            kw = _kwargs(info.annotation, info.metadata)
            if kw is None:
                continue
            dest = "cfg__" + path.replace(".", "__")
            default = info.default if info.default is not None else "none"
            if isinstance(default, enum.Enum):
                default = default.value
            desc = (info.description or "").replace("%", "%%")
            if "action" not in kw and "choices" not in kw:
                kw["metavar"] = _metavar(_unwrap(info.annotation)[0])
            group.add_argument(flag, dest=dest, default=None,
                               help=f"{desc}{'; ' if desc else ''}field default {default} [{path}]",
                               **kw)
            taken.add(flag)
            mapping[dest] = path
    parser.set_defaults(**{FLAG_MAP_ATTR: mapping})
    return mapping


def overrides_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted-path overrides for the generated flags the user actually gave."""
    mapping = getattr(args, FLAG_MAP_ATTR, None) or {}
    return {path: getattr(args, dest) for dest, path in mapping.items()
            if getattr(args, dest, None) is not None}
