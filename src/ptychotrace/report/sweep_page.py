"""The sweep directory's report and generic tables.

sweep_summary.json is validated once (records.SweepSummary); its content is then rendered
generically (the sweep command owns its structure: a new block shows up by itself). The
``.get`` calls below are those of the generic JSON-to-table renderer, on free-form values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..records.comparison import COMPARISON_FILE, ComparisonRecord
from ..records.run_metadata import RUN_METADATA_FILE, RunMetadata
from ..records.sweep import SWEEP_SUMMARY_FILE, SweepSummary
from .common import (
    SCHEMA_MISMATCH,
    _Dir,
    _flatten,
    _is_num,
    _missing,
    _seconds,
    _status_cell,
    _utc_now,
    _value,
    fmt,
)
from .html import (
    Cell,
    Document,
    Figure,
    Group,
    KeyValues,
    Section,
    Table,
)


# --------------------------------------------------------------------------------------------
# sweep directory (structure owned by the sweep command: rendered generically)
# --------------------------------------------------------------------------------------------
def _is_records(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _row_label(rec: Mapping[str, Any], i: int, index: Sequence[str] | None) -> str:
    if index is not None:
        return str(index[i])
    for key in ("name", "label", "id"):
        if isinstance(rec.get(key), (str, int, float)) and not isinstance(rec.get(key), bool):
            return _value(rec[key])
    return f"#{i + 1}"


def _records_tables(name: str, records: Sequence[Mapping[str, Any]],
                    index: Sequence[str] | None = None, depth: int = 0) -> list[Table]:
    """One table per list of JSON objects: nested objects flattened into dotted columns; a
    nested list of objects becomes a child table (first column: the parent row's name, label
    or position), two levels deep at most."""
    flat = [_flatten(r, depth=3) for r in records]
    children: dict[str, list[dict[str, Any]]] = {}
    for i, r in enumerate(flat):
        for c, v in r.items():
            if _is_records(v) and depth < 2:
                parent = _row_label(records[i], i, index)
                children.setdefault(c, []).extend({name: parent, **x} for x in v)
                r[c] = f"{len(v)} row{'' if len(v) == 1 else 's'}: see {name}.{c}"
    columns: list[str] = []
    for r in flat:
        columns += [k for k in r if k not in columns]
    rows = []
    for i, r in enumerate(flat):
        row: list[str | Cell] = [] if index is None else [str(index[i])]
        for c in columns:
            v = r.get(c)
            row.append(_status_cell(v) if c.split(".")[-1] == "status" else
                       fmt(v) if _is_num(v) or v is None else _value(v))
        rows.append(row)
    headers = ([] if index is None else ["name"]) + columns
    numeric = tuple(i for i, c in enumerate(headers)
                    if any(_is_num(r.get(c)) for r in flat))
    tables = [Table(headers, rows, name, numeric=numeric)]
    for c, recs in children.items():
        tables += _records_tables(f"{name}.{c}", recs, None, depth + 1)
    return tables


def _generic_blocks(data: Any, name: str) -> list:
    """Tables for a JSON value: records (a list or dict of objects) as tables, an object as
    key/value rows (nesting flattened), anything else as one row."""
    if _is_records(data):
        return _records_tables(name, data)
    if isinstance(data, Mapping) and data and all(isinstance(x, Mapping) for x in data.values()):
        return _records_tables(name, list(data.values()), list(data))
    if isinstance(data, Mapping):
        return [KeyValues([(k, fmt(v) if _is_num(v) or v is None else _value(v))
                           for k, v in _flatten(data, depth=3).items()], caption=name)]
    return [KeyValues([(name, _value(data))])]


def _png_figures(d: _Dir) -> list:
    figs = []
    for p in sorted(d.root.glob("*.png")):
        data = d.png(p.name)
        if data is not None:
            figs.append(Figure(data, p.name, p.stem.replace("_", " "), path=p))
    return figs


def _sweep_document(d: _Dir) -> Document:
    """sweep_summary.json, validated once (records.SweepSummary), rendered generically: its
    scalars (and lists of scalars) in the overview, its lists/dicts of records as tables first
    under Summary, its other objects as key/value tables side by side after them."""
    summ = d.required_record(SweepSummary, SWEEP_SUMMARY_FILE)
    facts: list[tuple[str, str | Cell]] = []
    tables: list = []
    others: list = []
    for k, v in summ.dump().items():
        if k.split(".")[-1] == "status":
            facts.append((k, _status_cell(v)))
        elif not isinstance(v, (Mapping, list)) or (isinstance(v, list) and not _is_records(v)):
            facts.append((k, fmt(v) if _is_num(v) or v is None else (_value(v) if v != [] else "none")))
        elif v:
            blocks = _generic_blocks(v, k)
            (tables if isinstance(blocks[0], Table) else others).extend(blocks)
    overview: list = [KeyValues(facts + [("directory", str(d.root))], caption="Sweep")]
    summary = tables + ([Group(others)] if others else [])
    if not summary:
        summary = [_missing("not available (sweep_summary.json holds no table or nested block)")]
    figs = _png_figures(d) or [_missing(f"not available (no PNG figure in {d.root})")]
    runs = []
    # run directories one or two levels down (DIR/<run>/ or DIR/runs/<run>/)
    found = sorted({p.parent for pattern in ("*/run_metadata.json", "*/*/run_metadata.json")
                    for p in d.root.glob(pattern)})
    for sub in found:
        sub_dir = _Dir(sub)
        md, why = sub_dir.record(RunMetadata, RUN_METADATA_FILE)
        cmp, _ = sub_dir.record(ComparisonRecord, COMPARISON_FILE)
        report = sub / "report.html"
        rel = sub.relative_to(d.root).as_posix()
        status = _status_cell(md.status) if md is not None else Cell(
            "unreadable run_metadata.json" if SCHEMA_MISMATCH not in str(why)
            else "run_metadata.json does not match its schema", "bad")
        runs.append([rel, fmt(md.scenario if md else None), status,
                     _seconds(md.elapsed_seconds if md else None),
                     fmt(cmp.amplitude.pearson_r if cmp else None),
                     fmt(cmp.phase.pearson_r if cmp else None),
                     f"{rel}/report.html" if report.is_file() else "not generated"])
    run_blocks: list = [Table(["directory", "scenario", "status", "elapsed", "amplitude Pearson r",
                               "phase Pearson r", "report"], runs, "Run directories in the sweep",
                              numeric=(3, 4, 5))] if runs else \
        [_missing(f"not available (no run_metadata.json in the sub-directories of {d.root})")]
    sections = [Section("overview", "Overview", overview), Section("summary", "Summary", summary),
                Section("figures", "Figures", figs), Section("runs", "Runs", run_blocks)]
    header = [("directory", str(d.root)), ("report generated", _utc_now())]
    return Document(f"Sweep report: {d.root.name}", "sweep", header, sections)
