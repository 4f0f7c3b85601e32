"""The report's shared pieces: kinds of directory, number formatting, reading a directory."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from ..format import format_value
from ..records.base import Block, Record, RecordError, describe_validation_error
from .figures import PNG_SIGNATURE
from .html import (
    Cell,
    Para,
)

#: Marker file -> kind, in detection order.
MARKERS = {"run_metadata.json": "run", "sweep_summary.json": "sweep", "bias_summary.json": "analyze"}
#: Section ids (stable: links and tests use them), in page order.
RUN_SECTIONS = ("overview", "images", "training-curves", "scale-chain", "metrics", "frc",
                "data-consistency", "label-vs-truth", "training-labels")
#: Only present (first) when the run's status is "failed".
FAILURE_SECTION = "failure"
SWEEP_SECTIONS = ("overview", "summary", "figures", "runs")
ANALYZE_SECTIONS = ("overview", "summary", "figures", "scenarios")

AMP_UNIT = "object amplitude units"
#: Words in a "not available" reason when a file does not match its record (Record.parse).
SCHEMA_MISMATCH = ": not a valid "
R = TypeVar("R", bound=Record)
M = TypeVar("M", bound=BaseModel)
PHASE_UNIT = "rad"


class ReportInputError(ValueError):
    """The directory is not something a report can be made of, or its marker file is unreadable."""


@dataclass(frozen=True)
class ReportResult:
    kind: str
    html: Path
    markdown: Path
    figures: tuple[Path, ...]


# --------------------------------------------------------------------------------------------
# number formatting: every number a person reads says its unit where one is known
# --------------------------------------------------------------------------------------------
def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def fmt(x: Any, unit: str = "", digits: int = 4) -> str:
    """A number for a person (the one helper, :func:`ptychotrace.format.format_value`)."""
    return format_value(x, unit, digits)


def _pct_of_fraction(x: Any) -> str:
    return fmt(100.0 * float(x), "%", digits=3) if _is_num(x) else fmt(x)


def _seconds(x: Any) -> str:
    if not _is_num(x):
        return fmt(x)
    x = float(x)
    if x < 60:
        return fmt(x, "s")
    minutes, sec = divmod(x, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    human = f"{hours} h {minutes} min" if hours else f"{minutes} min {sec:.0f} s"
    return f"{x:,.1f} s ({human})"


def _length(metres: float | None) -> str:
    """A length in metres for a person: nm, µm, mm or m (4 significant digits)."""
    if metres is None:
        return fmt(None)
    for bound, unit, per in ((1e-6, "nm", 1e-9), (1e-3, "µm", 1e-6), (1.0, "mm", 1e-3)):
        if abs(metres) < bound:
            return fmt(metres / per, unit)
    return fmt(metres, "m")


def _shape(shape: Any) -> str:
    if isinstance(shape, (list, tuple)) and all(isinstance(s, int) for s in shape):
        return "x".join(str(s) for s in shape) if shape else "scalar"
    return fmt(shape)


def _value(v: Any) -> str:
    """Any JSON value, compactly (config entries, sweep cells)."""
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        if len(v) > 12:
            return f"[{', '.join(_value(x) for x in v[:12])}, ... ({len(v)} items)]"
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    return fmt(v)


def _auto(key: str, v: Any) -> str:
    """A value whose unit follows from its field name (``*_seconds``, ``*_pct``, ``*_px``,
    ``*_per_second``); anything else via ``_value``."""
    if not _is_num(v):
        return _value(v)
    if key.endswith("_seconds") or key == "seconds":
        return _seconds(v)
    if key.endswith("_pct"):
        return fmt(v, "%")
    if key.endswith("_px"):
        return fmt(v, "px")
    if key in ("samples_per_second", "patterns_per_second") or key.endswith("patterns_per_second"):
        return fmt(v, "patterns/s")
    return fmt(v)


def _with_note(block: Block, key: str, unit: str = "") -> str:
    """block.key formatted; when None and the producer left ``<key>_note``, say why."""
    v = getattr(block, key)
    note = block.note_for(key)
    if v is None and note:
        return f"n/a ({note})"
    return fmt(v, unit)


def _flatten(d: Mapping[str, Any], prefix: str = "", depth: int = 8) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v and depth > 1:
            out.update(_flatten(v, key + ".", depth - 1))
        else:
            out[key] = v
    return out


def _status_cell(status: Any) -> Cell:
    return Cell(str(status) if status is not None else "n/a",
                "ok" if status == "ok" else ("bad" if status == "failed" else None))


def _non_finite_note(name: str, record: Block) -> list[Para]:
    """The writer's record of floats it stored as null (telemetry.writers.NON_FINITE_KEY)."""
    nf = record.non_finite()
    if nf is None or not nf.values:
        return []
    return [Para(f"{name} stores {len(nf.values)} non-finite value(s) as null: "
                 + ", ".join(f"{k} = {v}" for k, v in nf.values.items()), "warn")]


def _missing(text: str) -> Para:
    return Para(text, "missing")


def _absent(what: str, why: str) -> Para:
    """"<what> not available (...)": a missing file is a quiet notice; a file that does not match
    its typed record is shown in red (a producer and the report disagree on a field)."""
    return Para(f"{what} {why}", "bad" if SCHEMA_MISMATCH in why else "missing")


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# reading a directory
# --------------------------------------------------------------------------------------------
class _Dir:
    """Reads files of one directory; optional files come back with the reason they are absent."""

    def __init__(self, root: Path):
        self.root = root

    def json(self, rel: str, *, object_only: bool = True) -> tuple[Any, str | None]:
        path = self.root / rel
        if not path.is_file():
            return None, f"not available (file {rel} missing)"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return None, f"not available (file {rel} is not valid JSON: {exc})"
        if object_only and not isinstance(data, dict):
            return None, f"not available (file {rel} does not hold a JSON object)"
        return data, None

    def record(self, cls: type[M], rel: str) -> tuple[M | None, str | None]:
        """The typed record in ``rel`` (a records.Record, or any pydantic model such as the
        consistency record), validated once, or (None, why it is not available): missing, not
        JSON, or not matching its schema (the failing fields named)."""
        data, why = self.json(rel)
        if why:
            return None, why
        try:
            if issubclass(cls, Record):
                return cls.parse(data, source=rel), None
            return cls.model_validate(data), None
        except RecordError as exc:
            return None, f"not available ({exc})"
        except ValidationError as exc:
            return None, (f"not available ({rel}{SCHEMA_MISMATCH}{cls.__name__}: "
                          f"{describe_validation_error(exc)})")

    def required_record(self, cls: type[R], rel: str) -> R:
        """The marker file's typed record; ReportInputError naming the file and fields."""
        data = self.required(rel)
        try:
            return cls.parse(data, source=rel)
        except RecordError as exc:
            raise ReportInputError(f"{self.root}: {exc}") from None

    def required(self, rel: str, *, object_only: bool = True) -> Any:
        data, why = self.json(rel, object_only=object_only)
        if why:
            raise ReportInputError(f"{self.root}: {why.removeprefix('not available (').rstrip(')')}")
        return data

    def png(self, rel: str) -> bytes | None:
        path = self.root / rel
        if not path.is_file():
            return None
        data = path.read_bytes()
        return data if data.startswith(PNG_SIGNATURE) else None

    def npy(self, rel: str) -> np.ndarray | None:
        path = self.root / rel
        if not path.is_file():
            return None
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.number) or np.squeeze(a).ndim != 2:
            return None
        return np.squeeze(a)


def detect_kind(directory: str | Path) -> str:
    """"run", "sweep" or "analyze" (see MARKERS); a clear error otherwise."""
    root = Path(directory)
    if not root.exists():
        raise FileNotFoundError(f"directory {root} does not exist")
    if not root.is_dir():
        raise ReportInputError(f"{root} is not a directory; give a run, sweep or analyze directory")
    for marker, kind in MARKERS.items():
        if (root / marker).is_file():
            return kind
    expected = "; ".join(f"{m} (a {k} directory)" for m, k in MARKERS.items())
    raise ReportInputError(f"{root} is not a run, sweep or analyze directory: expected one of "
                           f"these files in it: {expected}")


def report_paths(directory: str | Path, output: str | Path | None = None) -> tuple[Path, Path, Path]:
    """(HTML, Markdown twin, generated-figure folder): DIR/report.html, DIR/report.md and
    DIR/report_files by default; ``output`` names the HTML file (.html or .htm), the others
    follow its stem."""
    html_path = Path(directory) / "report.html" if output is None else Path(output)
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--output must name an .html file, got {html_path}")
    if html_path.is_dir():
        raise ValueError(f"--output {html_path} is a directory; name the .html file to write")
    return html_path, html_path.with_suffix(".md"), html_path.with_name(f"{html_path.stem}_files")
