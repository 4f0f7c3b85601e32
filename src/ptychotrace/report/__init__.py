"""Reports a person looks at: one self-contained HTML page (and a Markdown twin) per directory.

``build_report(DIR)`` recognises three kinds of directory by the file that marks them:

    run_metadata.json   a run directory (telemetry.md)        -> RUN_SECTIONS
    sweep_summary.json  a sweep directory                     -> SWEEP_SECTIONS
    bias_summary.json   an analyze directory (the analyzer)   -> ANALYZE_SECTIONS

(checked in that order; the first found wins). It reads the directory, builds a
:class:`~ptychotrace.report.html.Document` (this module decides *what* is shown), and writes
``report.html`` (images embedded as base64, inline CSS, no script) and ``report.md`` (links to the
PNG files by relative path) next to each other. Figures the report has to draw itself (training
curves, FRC curves, images rendered from ``.npy`` when the run's PNG is missing) are written to
``<stem>_files/`` beside the report so the Markdown twin can link them.

Only the marker file is required. Any other file that is missing or malformed turns the part of
the report that needs it into "not available (file X missing)" (or "... is not valid JSON"), and
a missing block inside a file into "not available (no <block> block in <file>)"; nothing crashes.
A directory of none of the three kinds is a :class:`ReportInputError` naming the marker files.
An existing report is never replaced unless ``force``.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..format import format_value
from ..telemetry.scale_chain import RATIO_DEFS
from ..telemetry.stats import dig as _dig
from ..telemetry.writers import NON_FINITE_KEY, write_bytes, write_text
from .figures import PNG_SIGNATURE, frc_png, image_png, training_curves_png
from .html import (
    Cell,
    Details,
    Document,
    Figure,
    FigureGrid,
    Group,
    KeyValues,
    Para,
    Pre,
    Section,
    Table,
    iter_figures,
    render_html,
    render_markdown,
)

__all__ = ["build_report", "build_document", "detect_kind", "report_paths", "ReportInputError",
           "ReportResult", "MARKERS", "RUN_SECTIONS", "SWEEP_SECTIONS", "ANALYZE_SECTIONS",
           "FAILURE_SECTION", "fmt"]

#: Marker file -> kind, in detection order.
MARKERS = {"run_metadata.json": "run", "sweep_summary.json": "sweep", "bias_summary.json": "analyze"}
#: Section ids (stable: links and tests use them), in page order.
RUN_SECTIONS = ("overview", "images", "training-curves", "scale-chain", "metrics", "frc",
                "label-vs-truth", "training-labels")
#: Only present (first) when the run's status is "failed".
FAILURE_SECTION = "failure"
SWEEP_SECTIONS = ("overview", "summary", "figures", "runs")
ANALYZE_SECTIONS = ("overview", "summary", "figures", "scenarios")

AMP_UNIT = "object amplitude units"
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


def _with_note(block: Mapping[str, Any], key: str, unit: str = "") -> str:
    """block[key] formatted; when None and the producer left ``<key>_note``, say why."""
    v = block.get(key)
    if v is None and block.get(f"{key}_note"):
        return f"n/a ({block[f'{key}_note']})"
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


def _non_finite_note(name: str, data: Mapping[str, Any]) -> list[Para]:
    """The writer's record of floats it stored as null (telemetry.writers.NON_FINITE_KEY)."""
    nf = data.get(NON_FINITE_KEY)
    values = nf.get("values") if isinstance(nf, Mapping) else None
    if not isinstance(values, Mapping) or not values:
        return []
    return [Para(f"{name} stores {len(values)} non-finite value(s) as null: "
                 + ", ".join(f"{k} = {v}" for k, v in values.items()), "warn")]


def _missing(text: str) -> Para:
    return Para(text, "missing")


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


# --------------------------------------------------------------------------------------------
# run directory
# --------------------------------------------------------------------------------------------
#: (dotted config path, label, unit) shown as "key configuration" when present.
KEY_CONFIG = (
    ("simulation.N", "patch size N", "px"),
    ("simulation.object_size", "object size", "px"),
    ("simulation.nphotons", "nphotons", "photons/pattern"),
    ("simulation.gridsize", "gridsize", ""),
    ("simulation.probe_mode", "probe mode", ""),
    ("simulation.probe_scale", "probe scale", ""),
    ("simulation.object_phase", "object phase", ""),
    ("simulation.scan", "scan", ""),
    ("simulation.base_total_images", "base total images", ""),
    ("simulation.split_fraction", "test split fraction", ""),
    ("grouping.group_count", "group count", "groups/split"),
    ("training.nepochs", "epochs", ""),
    ("training.batch_size", "batch size", ""),
    ("training.lr", "learning rate", ""),
    ("training.contract", "measurement contract", ""),
    ("training.loss_weights", "loss weights", ""),
    ("training.device", "device (requested)", ""),
    ("inference.group_limit", "inference group limit", "groups"),
    ("inference.stitch_window", "stitch window", "px"),
    ("evaluation.prediction_scale_source", "prediction scale source", ""),
    ("evaluation.register_subpixel", "sub-pixel registration", ""),
    ("evaluation.phase_ramp", "phase ramp removal", ""),
)
COUNT_KEYS = (("total_images", ""), ("train_count", ""), ("test_count", ""), ("group_count", ""),
              ("group_limit", ""), ("gridsize", ""), ("N", "px"), ("nphotons", "photons/pattern"))
#: (channel, role) -> (PNG, .npy) relative to the run directory.
IMAGE_FILES = {
    ("amplitude", "truth"): ("ground_truth_amp.png", "ground_truth_amp.npy"),
    ("amplitude", "prediction"): ("inference_outputs/amplitude.png", "inference_outputs/amplitude.npy"),
    ("amplitude", "difference"): ("amplitude_diff.png", "amplitude_diff.npy"),
    ("phase", "truth"): ("ground_truth_phase.png", "ground_truth_phase.npy"),
    ("phase", "prediction"): ("inference_outputs/phase.png", "inference_outputs/phase.npy"),
    ("phase", "difference"): ("phase_diff.png", "phase_diff.npy"),
}


def _failure_section(md: Mapping[str, Any]) -> Section:
    err = md.get("error") if isinstance(md.get("error"), Mapping) else {}
    stage = md.get("failed_stage")
    head = (f"This run FAILED in stage {stage!r}" if stage else "This run FAILED") \
        + f": {err.get('type') or 'error'}: {err.get('message') or 'no message recorded'}"
    blocks: list = [Para(head, "bad")]
    if md.get("partial") or err.get("type") == "Incomplete":
        blocks.append(Para("The record is partial: the run had not finished when it was written "
                           "(the process may have been killed). Numbers below are what it had "
                           "gathered by then.", "warn"))
    else:
        blocks.append(Para("Sections below show every block gathered before the failure.", "note"))
    blocks.append(KeyValues([("status", _status_cell(md.get("status"))),
                             ("failed stage", fmt(stage)), ("error type", fmt(err.get("type"))),
                             ("message", fmt(err.get("message")))]))
    if err.get("traceback"):
        blocks.append(Details("traceback", [Pre(str(err["traceback"]))]))
    return Section(FAILURE_SECTION, "Run failed", blocks, tone="bad")


def _overview_run(md: Mapping[str, Any], root: Path) -> Section:
    """Small tables side by side: run / timings / counts, then configuration / dose / provenance;
    notices and the collapsed full configuration below."""
    run_cards: list = [KeyValues([
        ("scenario", fmt(md.get("scenario"))),
        ("status", _status_cell(md.get("status"))),
        ("started (UTC)", fmt(md.get("timestamp"))),
        ("finished (UTC)", fmt(md.get("finished_at"))),
        ("elapsed", _seconds(md.get("elapsed_seconds"))),
        ("schema version", fmt(md.get("schema_version"))),
        ("run directory", str(root)),
    ], caption="Run")]
    config_cards: list = []
    notes: list = []
    tail: list = []
    notes += _non_finite_note("run_metadata.json", md)
    if md.get("artifacts_missing"):
        notes.append(Para("Artifacts listed in run_metadata.json but missing on disk: "
                          + ", ".join(map(str, md["artifacts_missing"])), "warn"))
    stages = md.get("stage_seconds")
    if isinstance(stages, Mapping) and stages:
        total = md.get("elapsed_seconds")
        rows = [[name, _seconds(sec), _pct_of_fraction(sec / total)
                 if _is_num(sec) and _is_num(total) and total > 0 else "n/a"]
                for name, sec in stages.items()]
        run_cards.append(Table(["stage", "time", "share of elapsed"], rows, "Stage timings",
                               numeric=(1, 2)))
    else:
        notes.append(_missing("Stage timings not available (no stage_seconds block in "
                              "run_metadata.json)"))
    counts_src = md.get("counts") if isinstance(md.get("counts"), Mapping) else md
    counts = [(k, fmt(counts_src.get(k), u)) for k, u in COUNT_KEYS if k in counts_src]
    if counts:
        run_cards.append(KeyValues(counts, caption="Counts"))
    cfg = md.get("config")
    if isinstance(cfg, Mapping) and cfg:
        flat = _flatten(cfg)
        key_items = []
        for path, label, unit in KEY_CONFIG:
            v = _dig(cfg, *path.split("."))
            if v is not None or path in flat:
                key_items.append((f"{label} ({path})", fmt(v, unit) if _is_num(v) else _value(v)))
        if key_items:
            config_cards.append(KeyValues(key_items, caption="Key configuration"))
        tail.append(Details(f"Full resolved configuration ({len(flat)} values)",
                            [KeyValues([(k, _value(v)) for k, v in flat.items()])]))
    else:
        notes.append(_missing("Configuration not available (no config block in run_metadata.json)"))
    dsi = md.get("dataset_scale_info")
    if isinstance(dsi, Mapping):
        units = {"N": "px", "nphotons": "photons/pattern", "batch_mean_sum_intensity": "photons",
                 "dataset_scale": "sqrt(photons)", "fallback_scale": "sqrt(photons)"}
        config_cards.append(KeyValues([(k, fmt(v, units.get(k, "")) if _is_num(v) else _value(v))
                                       for k, v in dsi.items()], caption="Dose (dataset) scale"))
    prof = md.get("profile")
    if isinstance(prof, Mapping):
        items = [("profile", fmt(prof.get("name"))), ("active", fmt(prof.get("active"))),
                 ("applied", _value(prof.get("applied")))]
        skipped = prof.get("skipped")
        if isinstance(skipped, Mapping):
            items += [(f"skipped: {k}", _value(v)) for k, v in skipped.items()]
        config_cards.append(KeyValues(items, caption="Stable profile"))
    prov = _provenance_block(md.get("provenance"))
    (config_cards if isinstance(prov, KeyValues) else notes).append(prov)
    if md.get("cli_args") is not None:
        tail.append(Details("Command-line arguments", [Pre(_value(md["cli_args"]))]))
    blocks: list = [Group(run_cards)] + ([Group(config_cards)] if config_cards else [])
    return Section("overview", "Overview", blocks + notes + tail)


def _provenance_block(prov: Any) -> KeyValues | Para:
    if not isinstance(prov, Mapping):
        return _missing("Provenance not available (no provenance block in run_metadata.json)")
    commit = prov.get("git_commit")
    dirty = prov.get("git_dirty")
    items = [("package version", fmt(prov.get("package_version"))),
             ("git commit", "n/a (not a git checkout)" if not commit else
              f"{commit}" + (" (uncommitted changes)" if dirty else " (clean)" if dirty is False
                             else ""))]
    env = prov.get("environment")
    if isinstance(env, Mapping):
        items += [(f"environment: {k}", _value(v)) for k, v in env.items()]
    seeds = prov.get("seeds")
    if isinstance(seeds, Mapping):
        items += [(f"seed: {k}", _value(v)) for k, v in seeds.items()]
    src = prov.get("dataset_source")
    if isinstance(src, Mapping):
        items += [(f"dataset: {k}", _value(v)) for k, v in src.items()]
    return KeyValues(items, caption="Provenance")


def _images_section(d: _Dir) -> Section:
    units = {"amplitude": AMP_UNIT, "phase": PHASE_UNIT}
    cells: list[list] = []
    for channel in ("amplitude", "phase"):
        row: list = []
        truth_arr = d.npy(IMAGE_FILES[(channel, "truth")][1])
        limits = None
        if truth_arr is not None and np.isfinite(truth_arr).any():
            fin = truth_arr[np.isfinite(truth_arr)]
            limits = (float(fin.min()), float(fin.max()))
        for role in ("truth", "prediction", "difference"):
            png_rel, npy_rel = IMAGE_FILES[(channel, role)]
            title = f"{channel} {role}" if role != "difference" else f"{channel}: prediction - truth"
            data = d.png(png_rel)
            if data is not None:
                row.append(Figure(data, f"{title} ({png_rel})", title, path=d.root / png_rel))
                continue
            arr = d.npy(npy_rel)
            if arr is None:
                row.append(_missing(f"not available (files {png_rel} and {npy_rel} missing or "
                                    "unreadable)"))
                continue
            kind = "difference" if role == "difference" else channel
            unit = units[channel] if role != "difference" else f"pred - truth ({units[channel]})"
            rendered = image_png(arr, title, kind, unit, None if role == "difference" else limits)
            if rendered is None:
                row.append(_missing(f"not available ({npy_rel} has no finite pixel)"))
                continue
            name = f"image_{channel}_{role}.png"
            row.append(Figure(rendered, f"{title} (rendered from {npy_rel}; {png_rel} missing)",
                              title, name=name))
        cells.append(row)
    blocks: list = [Para("Ground truth, stitched prediction and their difference. PNGs written by "
                         "the run are shown as they are; where one is missing the image is drawn "
                         "from its .npy (truth and prediction then share the truth's colour range; "
                         "the difference is symmetric about 0). Phase in radians after global "
                         "offset removal where the run applied it.", "note"),
                    FigureGrid(["truth", "prediction", "difference"], ["amplitude", "phase"], cells)]
    return Section("images", "Images", blocks)


def _training_section(md: Mapping[str, Any], d: _Dir) -> Section:
    facts: list = []  # small tables, side by side above the figure
    blocks: list = []
    tr = md.get("training")
    if isinstance(tr, Mapping):
        items = []
        for k, v in tr.items():
            if isinstance(v, (Mapping, list)):
                continue
            cell: str | Cell = _auto(k, v)
            if k == "nan_detected" and v:
                cell = Cell("yes", "bad")
            items.append((k, cell))
        facts.append(KeyValues(items, caption="Training (run_metadata.json)"))
    else:
        facts.append(_missing("Training summary not available (no training block in "
                               "run_metadata.json)"))
    hist, why = d.json("train_outputs/history.json")
    if hist is None:
        blocks.append(_missing(f"Training curves {why}"))
    else:
        png, notes = training_curves_png(hist)
        if png is None:
            blocks.append(_missing(f"Training curves not available ({'; '.join(notes)})"))
        else:
            blocks.append(Figure(png, "Every metric of train_outputs/history.json per epoch; "
                                      "validation dashed; losses on a log y axis.",
                                 "training curves", name="training_curves.png"))
            for note in notes:
                blocks.append(Para(note, "warn" if "non-finite" in note else "note"))
    summ, why = d.json("train_outputs/history_summary.json")
    per = summ.get("metrics", summ) if isinstance(summ, Mapping) else None
    if isinstance(per, Mapping):
        rows = []
        for name, s in per.items():
            if not isinstance(s, Mapping) or name == "nan_overview":
                continue
            nan = Cell(f"yes (epoch {s.get('first_nan_epoch')}, step {s.get('first_nan_step')})",
                       "bad") if s.get("has_nan") else Cell("no")
            rows.append([name, fmt(s.get("count")), fmt(s.get("last")), fmt(s.get("min")),
                         fmt(s.get("max")), nan])
        if rows:
            facts.append(Table(["metric", "epochs", "last", "min", "max", "non-finite"], rows,
                               "History summary (train_outputs/history_summary.json)",
                               numeric=(1, 2, 3, 4)))
    elif why:
        facts.append(_missing(f"History summary {why}"))
    return Section("training-curves", "Training curves", [Group(facts), *blocks])


def _scale_chain_section(md: Mapping[str, Any], d: _Dir, ist: Any, ist_why: str | None) -> Section:
    """Stage and ratio tables, the symmetry verdict, then the small tables side by side (chain,
    dose scale, forward pass, split parity) and the split-parity verdict."""
    blocks: list = []
    small: list = []
    after: list = []
    if ist is None:
        blocks.append(_missing(f"Scale chain {ist_why}"))
    else:
        blocks, small = _scale_chain_blocks(ist)
    fpd = md.get("forward_pass_diagnostics")
    if isinstance(fpd, Mapping):
        small.append(KeyValues([(k, _auto(k, v)) for k, v in fpd.items()],
                               caption="Forward pass diagnostics"))
    else:
        after.append(_missing("Forward pass diagnostics not available (no forward_pass_diagnostics "
                              "block in run_metadata.json)"))
    sis = md.get("split_intensity_stats")
    if isinstance(sis, Mapping):
        splits = {k: v for k, v in sis.items() if isinstance(v, Mapping)}
        if splits:
            small.append(Table(["split", "batch mean summed intensity", "samples", "dataset scale"],
                               [[k, fmt(v.get("batch_mean_sum_intensity"), "photons"),
                                 fmt(v.get("n_samples")), fmt(v.get("dataset_scale"), "sqrt(photons)")]
                                for k, v in splits.items()], "Split intensity parity",
                               numeric=(1, 2, 3)))
        bad = bool(sis.get("deviation_exceeds_5pct"))
        after.append(Para(f"Train/test scale ratio {fmt(sis.get('train_vs_test_scale_ratio'))}, "
                          f"deviation {fmt(sis.get('train_vs_test_deviation_pct'), '%')}: "
                          + ("exceeds 5 %." if bad else "within 5 %."), "bad" if bad else "ok"))
    else:
        after.append(_missing("Split intensity parity not available (no split_intensity_stats "
                              "block in run_metadata.json)"))
    return Section("scale-chain", "Scale chain", blocks + ([Group(small)] if small else []) + after)


def _scale_chain_blocks(ist: Mapping[str, Any]) -> tuple[list, list]:
    """(stage and ratio tables with the symmetry verdict, small key/value tables)."""
    blocks: list = []
    small: list = []
    stages = [s for s in ist.get("stages") or [] if isinstance(s, Mapping)]
    ratios = ist.get("ratios") if isinstance(ist.get("ratios"), Mapping) else {}
    defs = ist.get("ratio_definitions") if isinstance(ist.get("ratio_definitions"), Mapping) else {}
    sym = ist.get("symmetry_check") if isinstance(ist.get("symmetry_check"), Mapping) else {}
    expected = sym.get("expected") or {}
    # a named ratio is shown on the row of its numerator stage ("into" that stage)
    into: dict[str, list[str]] = {}
    for name, value in ratios.items():
        num = RATIO_DEFS.get(name, (None,))[0]
        if num is not None:
            exp = f", expected {fmt(expected[name])}" if name in expected else ""
            into.setdefault(num, []).append(f"{name} = {fmt(value)}{exp}")
    rows = []
    for s in stages:
        st = s.get("stats") if isinstance(s.get("stats"), Mapping) else {}
        meta = s.get("metadata") if isinstance(s.get("metadata"), Mapping) else {}
        nan = st.get("nan_count")
        rows.append([str(s.get("name", "?")), fmt(s.get("source")), fmt(meta.get("domain")),
                     _shape(st.get("shape")), fmt(meta.get("count")), fmt(st.get("mean")),
                     fmt(st.get("std")), fmt(st.get("min")), fmt(st.get("max")),
                     Cell(fmt(nan), "bad") if _is_num(nan) and nan > 0 else fmt(nan),
                     "; ".join(into.get(str(s.get("name")), [])) or "-"])
    if rows:
        blocks.append(Table(["stage", "source", "domain", "shape", "count", "mean", "std", "min",
                             "max", "NaN", "ratio into this stage"], rows,
                            "Stages (intensity_stats.json), in pipeline order",
                            numeric=(4, 5, 6, 7, 8, 9)))
    else:
        blocks.append(_missing("not available (intensity_stats.json has no stages)"))
    if ist.get("missing_stages"):
        blocks.append(Para("Stages not recorded: " + ", ".join(map(str, ist["missing_stages"])),
                           "warn"))
    deviation = sym.get("relative_deviation") or {}
    unchecked = sym.get("unchecked") or {}
    violations = set(sym.get("violations") or [])
    notes = ist.get("ratio_notes") if isinstance(ist.get("ratio_notes"), Mapping) else {}
    rrows = []
    for name, value in ratios.items():
        if name in violations:
            check = Cell("violated", "bad")
        elif name in expected:
            check = Cell("ok", "ok")
        else:
            check = Cell("not checked" + (f": {unchecked[name]}" if name in unchecked else ""))
        dev = deviation.get(name)
        rrows.append([name, fmt(defs.get(name, "")), fmt(value), fmt(expected.get(name)),
                      fmt(100.0 * dev, "%") if _is_num(dev) else "n/a", check,
                      fmt(notes.get(name, ""))])
    if rrows:
        blocks.append(Table(["ratio", "definition", "value", "expected", "deviation", "symmetry check",
                             "note"], rrows, "Ratios of stage means", numeric=(2, 3, 4)))
    if sym:
        tol = sym.get("tolerance")
        tol_text = fmt(100.0 * tol, "%") if _is_num(tol) else "n/a"
        src = sym.get("primary_deviation_source") or "n/a"
        if sym.get("violated"):
            blocks.append(Para(f"Symmetry check VIOLATED ({', '.join(sorted(violations))}; "
                               f"tolerance {tol_text}); primary deviation source: {src}.", "bad"))
        else:
            blocks.append(Para(f"Symmetry check holds (tolerance {tol_text}); largest deviation at "
                               f"stage {src}.", "ok"))
    drop = ist.get("largest_drop")
    chain = ist.get("full_chain") if isinstance(ist.get("full_chain"), Mapping) else {}
    items = [("input-normalisation gain", fmt(ist.get("normalize_gain"))),
             ("full-chain product", fmt(ist.get("full_chain_product"))),
             ("product / gain (should be ~1)", fmt(chain.get("product_over_normalize_gain")))]
    if isinstance(drop, Mapping):
        items.append(("largest change", f"{drop.get('name')} = {fmt(drop.get('value'))} "
                                        f"(|log10| {fmt(drop.get('abs_log10'))})"))
    small.append(KeyValues(items, caption="Chain"))
    iscale = ist.get("intensity_scale")
    if isinstance(iscale, Mapping):
        small.append(KeyValues([(k, fmt(v, "sqrt(photons)") if _is_num(v) and k != "ratio"
                                 else _value(v)) for k, v in iscale.items()],
                               caption="Intensity (dose) scale: used vs held by the model"))
    return blocks, small


#: Rows of the metrics table that comparison_metrics.json also has on the full canvas.
FULL_CANVAS_ROWS = ("pixels compared", "MAE", "RMSE", "Pearson r", "SSIM", "PSNR")


def _metric_rows() -> list[tuple[str, Any]]:
    """Rows of the metrics table: (label, getter(channel block, unit) -> cell text)."""
    def psnr(b: Mapping, unit: str) -> str:
        p = b.get("psnr")
        if isinstance(p, Mapping):
            if p.get("value") is None:
                return f"n/a ({p.get('value_note', 'not computed')})"
            return f"{fmt(p.get('value'), 'dB')} (peak {fmt(p.get('peak'), unit)})"
        return fmt(p, "dB")

    def frc(key: str):
        return lambda b, unit: _with_note(b["frc"], key, "px") if isinstance(b.get("frc"), Mapping) \
            else "n/a"

    def nested(*keys: str):
        return lambda b, unit: fmt(_dig(b, *keys), unit)

    def at_bound(b: Mapping, unit: str) -> str:
        rc = b.get("output_range_check")
        if not isinstance(rc, Mapping):
            return f"n/a ({b['output_range_check_note']})" if b.get("output_range_check_note") \
                else "n/a"
        return f"{_pct_of_fraction(rc.get('fraction_at_bound'))} (bound {fmt(rc.get('bound'))})"

    return [
        ("pixels compared", lambda b, u: fmt(b.get("count"))),
        ("coverage fraction", lambda b, u: _pct_of_fraction(b.get("coverage_fraction"))),
        ("MAE", lambda b, u: _with_note(b, "mae", u)),
        ("RMSE", lambda b, u: _with_note(b, "rmse", u)),
        ("max |error|", lambda b, u: _with_note(b, "max_abs", u)),
        ("Pearson r", lambda b, u: _with_note(b, "pearson_r")),
        ("SSIM", lambda b, u: _with_note(b, "ssim")),
        ("PSNR", psnr),
        ("FRC 1/2-bit resolution", frc("half_bit_resolution")),
        ("FRC 0.5 resolution", frc("frc50")),
        ("bias mean (pred - truth)", nested("bias_summary", "mean")),
        ("bias median", nested("bias_summary", "median")),
        ("bias p05 / p95", lambda b, u: f"{fmt(_dig(b, 'bias_summary', 'p05'), u)} / "
                                        f"{fmt(_dig(b, 'bias_summary', 'p95'), u)}"
         if isinstance(b.get("bias_summary"), Mapping) else "n/a"),
        ("prediction mean", nested("pred_stats", "mean")),
        ("truth mean", nested("truth_stats", "mean")),
        ("at activation bound", at_bound),
    ]


def _metrics_section(cmp: Any, why: str | None, md: Mapping[str, Any]) -> Section:
    if cmp is None:
        return Section("metrics", "Metrics", [_missing(f"Metrics {why}")])
    blocks: list = []
    full = cmp.get("full_canvas") if isinstance(cmp.get("full_canvas"), Mapping) else {}
    columns = [("amplitude", "covered region", cmp.get("amplitude"), AMP_UNIT),
               ("amplitude", "full canvas", full.get("amplitude"), AMP_UNIT),
               ("phase", "covered region", cmp.get("phase"), PHASE_UNIT),
               ("phase", "full canvas", full.get("phase"), PHASE_UNIT)]
    rows = []
    for label, getter in _metric_rows():
        row: list[str | Cell] = [label]
        for _, region, blk, unit in columns:
            if not isinstance(blk, Mapping):
                row.append("n/a")
                continue
            if region == "full canvas" and label not in FULL_CANVAS_ROWS:
                row.append("-")  # the full canvas carries the headline numbers only
                continue
            row.append(getter(blk, "" if unit == AMP_UNIT else unit))
        rows.append(row)
    blocks.append(Table(["metric"] + [f"{ch}, {region}" for ch, region, _, _ in columns], rows,
                        "Prediction vs ground truth (comparison_metrics.json)",
                        numeric=(1, 2, 3, 4)))
    blocks.append(Para(f"Amplitude in {AMP_UNIT} (the truth's), phase in radians after global "
                       "phase offset removal; resolutions in pixels. '-' = reported on the covered "
                       "region only.", "note"))
    blocks += _non_finite_note("comparison_metrics.json", cmp)
    missing = [ch for ch in ("amplitude", "phase") if not isinstance(cmp.get(ch), Mapping)]
    if missing:
        blocks.append(_missing(f"not available (no {' or '.join(missing)} block in "
                               "comparison_metrics.json)"))
    frame: list = []  # side by side under the table
    ps = cmp.get("prediction_scale") if isinstance(cmp.get("prediction_scale"), Mapping) \
        else md.get("prediction_scale")
    if isinstance(ps, Mapping):
        frame.append(KeyValues([(k, _value(v)) for k, v in ps.items()],
                               caption="Prediction scale (amplitude, before the metrics)"))
    else:
        frame.append(_missing("Prediction scale not available (no prediction_scale block)"))
    reg = cmp.get("registration")
    if isinstance(reg, Mapping):
        items = []
        for k, v in reg.items():
            unit = "px" if k.endswith("_px") else ""
            items.append((k, ", ".join(fmt(x, unit) for x in v) if isinstance(v, list)
                          else fmt(v, unit) if _is_num(v) else _value(v)))
        frame.append(KeyValues(items, caption="Registration (prediction onto truth)"))
    else:
        frame.append(_missing("Registration not available (no registration block in "
                              "comparison_metrics.json)"))
    other = [("phase offset removed", fmt(cmp.get("phase_offset_removed_rad"), PHASE_UNIT)),
             ("phase offset weighting", fmt(cmp.get("phase_offset_weighting"))),
             ("phase ramp", _value(cmp.get("phase_ramp")) if cmp.get("phase_ramp") else "not removed"),
             ("canvas shape", _shape(cmp.get("canvas_shape"))),
             ("coverage fraction (canvas)", _pct_of_fraction(cmp.get("coverage_fraction")))]
    frame.append(KeyValues(other, caption="Evaluation frame"))
    return Section("metrics", "Metrics", [*blocks, Group(frame)])


def _frc_section(cmp: Any, why: str | None) -> Section:
    if cmp is None:
        return Section("frc", "Fourier ring correlation", [_missing(f"FRC {why}")])
    frcs = {ch: _dig(cmp, ch, "frc") for ch in ("amplitude", "phase")}
    blocks: list = []
    png = frc_png({ch: f for ch, f in frcs.items() if isinstance(f, Mapping)})
    if png is None:
        blocks.append(_missing("FRC curves not available (no frc.curve in the amplitude or phase "
                               "block of comparison_metrics.json)"))
    else:
        blocks.append(Figure(png, "FRC of prediction vs truth on the covered region, with the "
                                  "1/2-bit threshold (dashed) and the 0.5 line (dotted); vertical "
                                  "lines mark the crossings.", "FRC curves", name="frc.png"))
    rows = []
    for ch, f in frcs.items():
        if not isinstance(f, Mapping):
            rows.append([ch, "n/a", "n/a", "n/a", "n/a", "n/a", "no frc block"])
            continue
        box = f.get("shape")
        notes = "; ".join(str(f[k]) for k in ("half_bit_resolution_note", "frc50_note", "note")
                          if f.get(k))
        rows.append([ch, _with_note(f, "half_bit_resolution", "px"),
                     fmt(f.get("half_bit_crossing_frequency"), "cycles/px"),
                     _with_note(f, "frc50", "px"), fmt(f.get("frc50_crossing_frequency"), "cycles/px"),
                     f"{fmt(f.get('window'))}, box {_shape(box)}", notes or "-"])
    blocks.append(Table(["channel", "1/2-bit resolution", "1/2-bit crossing", "FRC 0.5 resolution",
                         "0.5 crossing", "window, region", "notes"], rows,
                        "Crossings (resolution = 1 / crossing frequency)", numeric=(1, 2, 3, 4)))
    return Section("frc", "Fourier ring correlation", blocks)


def _block_from(md: Mapping[str, Any], ist: Any, key: str) -> tuple[Any, str]:
    if isinstance(md.get(key), Mapping):
        return md[key], "run_metadata.json"
    if isinstance(ist, Mapping) and isinstance(ist.get(key), Mapping):
        return ist[key], "intensity_stats.json"
    return None, (f"not available (no {key} block in run_metadata.json or intensity_stats.json)")


def _label_vs_truth_section(md: Mapping[str, Any], ist: Any) -> Section:
    lvt, src = _block_from(md, ist, "label_vs_truth_analysis")
    if lvt is None:
        return Section("label-vs-truth", "Labels vs ground truth", [_missing(f"Labels vs truth {src}")])
    verdict = str(lvt.get("verdict") or "n/a")
    tone = "ok" if verdict.startswith("consistent") else ("warn" if verdict.startswith("undetermined")
                                                           or verdict == "n/a" else "bad")
    blocks: list = [Para(f"Verdict: {verdict}", tone)]
    items = []
    for k, v in lvt.items():
        if k in ("verdict",):
            continue
        if k.endswith("_pct") and _is_num(v):
            text: str | Cell = fmt(v, "%")
        elif k == "tolerance" and _is_num(v):
            text = _pct_of_fraction(v)
        elif k.endswith("_mean") and k.startswith(("Y_amp", "ground_truth", "sqrt_Y_I")):
            text = fmt(v, AMP_UNIT)
        else:
            text = fmt(v) if _is_num(v) or v is None else _value(v)
        items.append((k, text))
    blocks.append(KeyValues(items, caption=f"label_vs_truth_analysis ({src})"))
    return Section("label-vs-truth", "Labels vs ground truth", blocks)


def _training_labels_section(md: Mapping[str, Any], ist: Any) -> Section:
    tl, src = _block_from(md, ist, "training_labels")
    if tl is None:
        return Section("training-labels", "Training labels", [_missing(f"Training labels {src}")])
    rows = []
    for name, s in tl.items():
        if name == "missing" or not isinstance(s, Mapping):
            continue
        parts = [(name, s)]
        if s.get("complex") or (s.get("mean") is None and isinstance(s.get("amplitude"), Mapping)):
            parts = [(f"{name} |amplitude|", {**s, **s.get("amplitude", {})}),
                     (f"{name} phase (rad)", {**s, **(s.get("phase") or {})})]
        for label, st in parts:
            nan = st.get("nan_count")
            rows.append([label, _shape(st.get("shape")), fmt(st.get("dtype")), fmt(st.get("min")),
                         fmt(st.get("max")), fmt(st.get("mean")), fmt(st.get("std")),
                         Cell(fmt(nan), "bad") if _is_num(nan) and nan > 0 else fmt(nan),
                         f"{fmt(st.get('finite_count'))} / {fmt(st.get('total_count'))}",
                         fmt(st.get("note", ""))])
    blocks: list = []
    if rows:
        blocks.append(Table(["label", "shape", "dtype", "min", "max", "mean", "std", "NaN",
                             "finite / total", "what it is (units)"], rows,
                            f"Labels the model is trained against ({src}), before the first step",
                            numeric=(3, 4, 5, 6, 7, 8)))
    else:
        blocks.append(_missing(f"not available (training_labels in {src} holds no label)"))
    missing = tl.get("missing")
    if isinstance(missing, Mapping) and missing:
        blocks.append(Table(["label not carried", "reason"],
                            [[k, _value(v)] for k, v in missing.items()], "Missing labels"))
    return Section("training-labels", "Training labels", blocks)


def _run_document(d: _Dir) -> Document:
    md = d.required("run_metadata.json")
    cmp, cmp_why = d.json("comparison_metrics.json")
    ist, ist_why = d.json("intensity_stats.json")
    sections: list[Section] = []
    if md.get("status") == "failed":
        sections.append(_failure_section(md))
    sections += [
        _overview_run(md, d.root),
        _images_section(d),
        _training_section(md, d),
        _scale_chain_section(md, d, ist, ist_why),
        _metrics_section(cmp, cmp_why, md),
        _frc_section(cmp, cmp_why),
        _label_vs_truth_section(md, ist),
        _training_labels_section(md, ist),
    ]
    scenario = md.get("scenario") or d.root.name
    header = [("scenario", str(scenario)), ("status", str(md.get("status", "n/a"))),
              ("started", str(md.get("timestamp", "n/a"))), ("directory", str(d.root)),
              ("report generated", _utc_now())]
    return Document(f"Run report: {scenario}", "run", header, sections)


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
    """sweep_summary.json rendered generically: its scalars (and lists of scalars) in the
    overview, its lists/dicts of records as tables first under Summary, its other objects as
    key/value tables side by side after them."""
    summ = d.required("sweep_summary.json", object_only=False)
    top = summ if isinstance(summ, Mapping) else {}
    facts: list[tuple[str, str | Cell]] = []
    tables: list = []
    others: list = []
    for k, v in top.items():
        if k.split(".")[-1] == "status":
            facts.append((k, _status_cell(v)))
        elif not isinstance(v, (Mapping, list)) or (isinstance(v, list) and not _is_records(v)):
            facts.append((k, fmt(v) if _is_num(v) or v is None else (_value(v) if v != [] else "none")))
        else:
            blocks = _generic_blocks(v, k)
            (tables if isinstance(blocks[0], Table) else others).extend(blocks)
    overview: list = [KeyValues(facts + [("directory", str(d.root))], caption="Sweep")]
    if not isinstance(summ, Mapping):
        tables = _generic_blocks(summ, "sweep_summary.json")
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
        md, _ = sub_dir.json("run_metadata.json")
        cmp, _ = sub_dir.json("comparison_metrics.json")
        report = sub / "report.html"
        rel = sub.relative_to(d.root).as_posix()
        runs.append([rel, fmt(_dig(md, "scenario")), _status_cell(_dig(md, "status"))
                     if md is not None else Cell("unreadable run_metadata.json", "bad"),
                     _seconds(_dig(md, "elapsed_seconds")),
                     fmt(_dig(cmp, "amplitude", "pearson_r")), fmt(_dig(cmp, "phase", "pearson_r")),
                     f"{rel}/report.html" if report.is_file() else "not generated"])
    run_blocks: list = [Table(["directory", "scenario", "status", "elapsed", "amplitude Pearson r",
                               "phase Pearson r", "report"], runs, "Run directories in the sweep",
                              numeric=(3, 4, 5))] if runs else \
        [_missing(f"not available (no run_metadata.json in the sub-directories of {d.root})")]
    sections = [Section("overview", "Overview", overview), Section("summary", "Summary", summary),
                Section("figures", "Figures", figs), Section("runs", "Runs", run_blocks)]
    header = [("directory", str(d.root)), ("report generated", _utc_now())]
    return Document(f"Sweep report: {d.root.name}", "sweep", header, sections)


# --------------------------------------------------------------------------------------------
# analyze directory (bias_summary.json of the analyzer)
# --------------------------------------------------------------------------------------------
def _analyze_document(d: _Dir) -> Document:
    bs = d.required("bias_summary.json")
    scen = bs.get("scenarios") if isinstance(bs.get("scenarios"), Mapping) else {}
    ov = bs.get("overview") if isinstance(bs.get("overview"), Mapping) else {}
    overview: list = [KeyValues([
        ("generated (UTC)", fmt(bs.get("generated_at"))),
        ("scenarios", fmt(bs.get("scenario_count"))),
        ("mean amplitude Pearson r", fmt(ov.get("mean_amplitude_pearson"))),
        ("mean phase Pearson r", fmt(ov.get("mean_phase_pearson"))),
        ("mean |amplitude bias|", fmt(ov.get("mean_abs_amplitude_bias"), AMP_UNIT)),
        ("runs not ok", Cell(", ".join(ov["failed_runs"]), "bad") if ov.get("failed_runs") else "none"),
        ("runs with NaN in training", Cell(", ".join(ov["nan_runs"]), "bad") if ov.get("nan_runs")
         else "none"),
        ("normalisation invariant violated", ", ".join(ov.get("normalization_invariant_violations")
                                                       or []) or "none"),
        ("split parity beyond 5 %", ", ".join(ov.get("split_parity_violations") or []) or "none"),
    ], caption="Analysis")]
    inputs = bs.get("inputs")
    if isinstance(inputs, Mapping):
        overview.append(Table(["scenario", "run directory"], [[k, str(v)] for k, v in inputs.items()],
                              "Inputs"))
    if isinstance(bs.get("thresholds"), Mapping):
        overview.append(Details("Diagnosis thresholds", [KeyValues(
            [(k, _value(v)) for k, v in bs["thresholds"].items()])]))
    rows = []
    for name, s in scen.items():
        ab, pb = (_dig(s, "comparison", ch, "bias_summary") for ch in ("amplitude", "phase"))
        nan = _dig(s, "training_nan", "any_nan")
        diag = s.get("diagnosis") if isinstance(s.get("diagnosis"), Mapping) else {}
        rows.append([name, _status_cell(s.get("status")), fmt(_dig(ab, "mean")), fmt(_dig(ab, "median")),
                     fmt(_dig(pb, "mean"), PHASE_UNIT), fmt(_dig(pb, "median"), PHASE_UNIT),
                     fmt(_dig(s, "intensity", "used_scale"), "sqrt(photons)"),
                     fmt(_dig(s, "intensity", "delta_scale")),
                     fmt(_dig(s, "intensity", "used_mode")),
                     Cell("yes", "bad") if nan else ("no" if nan is False else "n/a"),
                     Cell(f"{diag.get('label') or 'none'} ({fmt(diag.get('score'))})",
                          "bad" if diag.get("exceeds_threshold") else None)])
    summary: list = [Table(["scenario", "status", "amp bias mean", "amp bias median",
                            "phase bias mean", "phase bias median", "dose scale", "delta scale",
                            "scale mode", "NaN", "diagnosis (score)"], rows,
                           "Bias summary (bias_summary.json)", numeric=(2, 3, 4, 5, 6, 7)) if rows
                     else _missing("not available (no scenarios in bias_summary.json)"),
                     Para("Bias = prediction - truth on the covered region (amplitude in "
                          f"{AMP_UNIT}, phase in radians after offset removal); delta scale = scale "
                          "held by the model - scale used; a diagnosis score above 1 exceeds its "
                          "threshold.", "note")]
    figs = _png_figures(d) or [_missing("not available (file bias_summary.png missing)")]
    per: list = []
    for name, s in scen.items():
        diag = s.get("diagnosis") if isinstance(s.get("diagnosis"), Mapping) else {}
        items: list = [("run directory", fmt(s.get("run_dir"))), ("status", _status_cell(s.get("status")))]
        for ch, unit in (("amplitude", ""), ("phase", PHASE_UNIT)):
            c = _dig(s, "comparison", ch)
            if isinstance(c, Mapping):
                items.append((f"{ch}: MAE / RMSE / Pearson r / SSIM",
                              f"{fmt(c.get('mae'), unit)} / {fmt(c.get('rmse'), unit)} / "
                              f"{fmt(c.get('pearson_r'))} / {fmt(c.get('ssim'))}"))
        for label, key in (("split parity", "split_parity"), ("labels vs truth", "label_vs_truth")):
            blk = s.get(key) if isinstance(s.get(key), Mapping) else {}
            items.append((label, fmt(blk.get("verdict")) if blk.get("available") else
                          f"not assessed ({blk.get('reason', 'absent')})"))
        inv = s.get("normalization_invariant") if isinstance(s.get("normalization_invariant"),
                                                              Mapping) else {}
        if inv.get("available", True) and "violated" in inv:
            items.append(("normalisation invariant", Cell("violated: " + ", ".join(
                inv.get("violations") or []), "bad") if inv.get("violated") else Cell("holds", "ok")))
        if s.get("absent"):
            items.append(("absent (not fatal)", ", ".join(map(str, s["absent"]))))
        per.append(KeyValues(items, caption=name))
        if diag.get("line"):   # the analyzer's verdict (analysis/rules.py): healthy or the fault
            per.append(Para(diag["line"], "bad" if diag.get("exceeds_threshold") else "ok"))
        elif diag.get("stage"):
            text = (f"{name}: most deviating stage is {diag.get('label')} (normalised deviation "
                    f"{fmt(diag.get('score'))}, threshold 1): {diag.get('reason')}.")
            per.append(Para(text, "bad" if diag.get("exceeds_threshold") else "ok"))
        else:
            per.append(Para(f"{name}: {diag.get('reason', 'no diagnosis recorded')}", "warn"))
    if not per:
        per = [_missing("not available (no scenarios in bias_summary.json)")]
    sections = [Section("overview", "Overview", overview), Section("summary", "Summary", summary),
                Section("figures", "Figures", figs), Section("scenarios", "Scenarios", per)]
    header = [("directory", str(d.root)), ("analysis generated", fmt(bs.get("generated_at"))),
              ("report generated", _utc_now())]
    return Document(f"Bias analysis report: {d.root.name}", "analyze", header, sections)


# --------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------
_BUILDERS = {"run": _run_document, "sweep": _sweep_document, "analyze": _analyze_document}


def build_document(directory: str | Path, kind: str | None = None) -> Document:
    """The report document of ``directory`` (kind detected when not given); writes nothing."""
    root = Path(directory)
    kind = kind or detect_kind(root)
    return _BUILDERS[kind](_Dir(root))


def build_report(directory: str | Path, output: str | Path | None = None, *,
                 force: bool = False) -> ReportResult:
    """Write the HTML report and its Markdown twin for a run, sweep or analyze directory.

    ``output``: the HTML path (default DIR/report.html); the Markdown twin takes the same stem
    with ``.md`` and generated figures go to ``<stem>_files/``. An existing report is refused
    (``FileExistsError``) unless ``force``; with ``force`` it is replaced and generated figures
    that are no longer part of it are removed. Everything is read before anything is written.
    """
    root = Path(directory)
    kind = detect_kind(root)
    html_path, md_path, fig_dir = report_paths(root, output)
    existing = [p for p in (html_path, md_path, fig_dir) if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(map(str, existing))} already exist(s); pass --force to "
                              "replace the report, or choose another --output")
    doc = build_document(root, kind)
    written: list[Path] = []
    for section in doc.sections:
        for fig in iter_figures(section.blocks):
            if fig.path is None:
                fig.path = fig_dir / (fig.name or f"figure_{len(written) + 1}.png")
                write_bytes(fig.path, fig.data)
                written.append(fig.path)
    if fig_dir.is_dir():  # (force) figures of an earlier report that this one no longer has
        for stale in fig_dir.glob("*.png"):
            if stale not in written:
                stale.unlink()
        if not any(fig_dir.iterdir()):
            fig_dir.rmdir()
    write_text(md_path, render_markdown(doc, md_path.parent))
    write_text(html_path, render_html(doc))
    return ReportResult(kind, html_path, md_path, tuple(written))
