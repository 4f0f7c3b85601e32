"""The base of every typed record: pydantic models with a schema version, read and written as JSON.

A *record* is a file one stage writes and another reads (comparison_metrics.json,
run_metadata.json, baseline_metadata.json, sweep_summary.json). A *block* is a nested part of one.
Producers build the model and write ``record.dump()``; consumers call ``Model.read(path)`` or
``Model.model_validate(dict)`` and use attributes, never ``.get`` chains.

Field names follow shared/spec/telemetry.md (a public interface: add, never rename). Models allow
extra keys (``<key>_note`` siblings that say why a value is null, and fields added later) and
keep them on a round trip; the fields they declare without a default are required, so a producer
that renames or drops one fails validation (and a test).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError


class RecordError(ValueError):
    """A record file is missing, unreadable or does not match its schema; names the file."""


class Block(BaseModel):
    """A nested part of a record. Extra keys are kept (notes, later additions)."""

    model_config = ConfigDict(extra="allow", protect_namespaces=())

    def dump(self) -> dict[str, Any]:
        """Plain JSON-ready dict (enums as values; NaN is left to the writer to turn into null)."""
        return self.model_dump(mode="json")

    def recorded(self) -> dict[str, Any]:
        """The fields as the file held them (JSON-ready; defaults it did not write left out):
        for readers that show a block generically."""
        return self.model_dump(mode="json", exclude_unset=True)

    def note_for(self, key: str) -> str | None:
        """The ``<key>_note`` sibling (why ``key`` is null), if any."""
        extra = self.model_extra or {}
        return extra.get(f"{key}_note")

    def non_finite(self) -> NonFinite | None:
        """The writer's list of floats it stored as null (telemetry.writers.NON_FINITE_KEY),
        validated; None when there were none."""
        from ..telemetry.writers import NON_FINITE_KEY

        raw = (self.model_extra or {}).get(NON_FINITE_KEY)
        return None if raw is None else NonFinite.model_validate(raw)


class NonFinite(BaseModel):
    """``non_finite_values``: {"note": ..., "values": {JSON path: "nan" | "inf" | "-inf"}}."""

    model_config = ConfigDict(extra="allow")
    note: str | None = None
    values: dict[str, str]


class Record(Block):
    """A top-level record file. ``SCHEMA`` is its current schema version."""

    schema_version: str = "1.0"

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """Load and validate ``path``; a clear RecordError naming the file and field otherwise."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RecordError(f"{path}: no such file") from None
        except OSError as exc:
            raise RecordError(f"{path}: cannot read: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RecordError(f"{path}: not valid JSON: {exc}") from exc
        return cls.parse(data, source=str(path))

    @classmethod
    def parse(cls, data: Any, source: str = "record") -> Self:
        """Validate a decoded JSON value; RecordError with every failing field otherwise."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RecordError(f"{source}: not a valid {cls.__name__}: "
                              f"{describe_validation_error(exc)}") from exc

    def write(self, path: str | Path) -> Path:
        """Atomic JSON write (telemetry.writers.write_json: indent 2, no NaN)."""
        from ..telemetry.writers import write_json

        write_json(path, self.dump())
        return Path(path)


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def read_optional(cls: type[Record], path: str | Path) -> tuple[Record | None, str | None]:
    """(record, None) or (None, why not): for readers where the file is optional."""
    try:
        return cls.read(path), None
    except RecordError as exc:
        return None, str(exc)
