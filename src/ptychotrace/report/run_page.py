"""The run directory's report: overview, failure, images, training curves (and the document).

Sections on the scale chain, metrics, FRC and labels are in :mod:`.run_metrics`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..physics.stitching import COVERAGE_MIN_WEIGHT
from ..telemetry.stats import dig as _dig
from .common import (
    AMP_UNIT,
    FAILURE_SECTION,
    PHASE_UNIT,
    _auto,
    _Dir,
    _flatten,
    _is_num,
    _missing,
    _non_finite_note,
    _pct_of_fraction,
    _seconds,
    _status_cell,
    _utc_now,
    _value,
    fmt,
)
from .figures import image_png, training_curves_png
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
)
from .run_metrics import (
    _frc_section,
    _label_vs_truth_section,
    _metrics_section,
    _scale_chain_section,
    _training_labels_section,
)

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


def _images_section(d: _Dir, pixel_size_m: float | None = None) -> Section:
    """The truth / prediction / difference grid; ``pixel_size_m`` (the object pixel in metres,
    from run_metadata.json's geometry block) puts a scale bar on images the report draws."""
    units = {"amplitude": AMP_UNIT, "phase": PHASE_UNIT}
    cells: list[list] = []
    # pixels without a value (uncovered) are drawn as "no value", never as 0
    weight = d.npy("inference_outputs/coverage_weight.npy")
    covered = None if weight is None else weight >= COVERAGE_MIN_WEIGHT
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
            mask = covered if role != "truth" and covered is not None \
                and covered.shape == arr.shape else None
            rendered = image_png(arr, title, kind, unit, None if role == "difference" else limits,
                                 mask=mask, pixel_size_m=pixel_size_m)
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
    if pixel_size_m is not None:
        blocks.insert(1, Para(f"Object pixel {fmt(pixel_size_m * 1e9, 'nm')} (geometry in "
                              "run_metadata.json): amplitude and phase images carry a scale bar.",
                              "note"))
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


def _pixel_size_m(md: Mapping[str, Any]) -> float | None:
    from ..records.run_metadata import GeometryBlock

    geom = md.get("geometry")
    return None if not geom else GeometryBlock.model_validate(geom).object_pixel_width_m


def _run_document(d: _Dir) -> Document:
    md = d.required("run_metadata.json")
    cmp, cmp_why = d.json("comparison_metrics.json")
    ist, ist_why = d.json("intensity_stats.json")
    sections: list[Section] = []
    if md.get("status") == "failed":
        sections.append(_failure_section(md))
    sections += [
        _overview_run(md, d.root),
        _images_section(d, _pixel_size_m(md)),
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
