"""The run directory's report: overview, failure, images, training curves (and the document).

Sections on the scale chain, metrics, FRC and labels are in :mod:`.run_metrics`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..evaluate.consistency import ConsistencyRecord
from ..physics.stitching import COVERAGE_MIN_WEIGHT
from ..records.comparison import COMPARISON_FILE, ComparisonRecord
from ..records.history import (
    HISTORY_FILE,
    HISTORY_SUMMARY_FILE,
    HistorySummary,
    TrainingHistory,
)
from ..records.intensity_stats import INTENSITY_STATS_FILE, IntensityStats
from ..records.run_metadata import RUN_METADATA_FILE, GeometryBlock, Provenance, RunMetadata
from ..telemetry.stats import dig as _dig
from .common import (
    AMP_UNIT,
    FAILURE_SECTION,
    PHASE_UNIT,
    _absent,
    _auto,
    _Dir,
    _flatten,
    _is_num,
    _length,
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
    CONSISTENCY_FILE,
    _consistency_section,
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


def _failure_section(md: RunMetadata) -> Section:
    err = md.error
    stage = md.failed_stage
    head = (f"This run FAILED in stage {stage!r}" if stage else "This run FAILED") \
        + f": {(err and err.type) or 'error'}: {(err and err.message) or 'no message recorded'}"
    blocks: list = [Para(head, "bad")]
    if md.partial or (err is not None and err.type == "Incomplete"):
        blocks.append(Para("The record is partial: the run had not finished when it was written "
                           "(the process may have been killed). Numbers below are what it had "
                           "gathered by then.", "warn"))
    else:
        blocks.append(Para("Sections below show every block gathered before the failure.", "note"))
    blocks.append(KeyValues([("status", _status_cell(md.status)),
                             ("failed stage", fmt(stage)),
                             ("error type", fmt(err.type if err else None)),
                             ("message", fmt(err.message if err else None))]))
    if err is not None and err.traceback:
        blocks.append(Details("traceback", [Pre(err.traceback)]))
    return Section(FAILURE_SECTION, "Run failed", blocks, tone="bad")


def _overview_run(md: RunMetadata, root: Path) -> Section:
    """Small tables side by side: run / timings / counts, then configuration / dose / provenance;
    notices and the collapsed full configuration below."""
    run_cards: list = [KeyValues([
        ("scenario", fmt(md.scenario)),
        ("status", _status_cell(md.status)),
        ("started (UTC)", fmt(md.timestamp)),
        ("finished (UTC)", fmt(md.finished_at)),
        ("elapsed", _seconds(md.elapsed_seconds)),
        ("schema version", fmt(md.schema_version)),
        ("run directory", str(root)),
    ], caption="Run")]
    config_cards: list = []
    notes: list = []
    tail: list = []
    notes += _non_finite_note("run_metadata.json", md)
    if md.artifacts_missing:
        notes.append(Para("Artifacts listed in run_metadata.json but missing on disk: "
                          + ", ".join(md.artifacts_missing), "warn"))
    if md.stage_seconds:
        total = md.elapsed_seconds
        rows = [[name, _seconds(sec), _pct_of_fraction(sec / total) if total > 0 else "n/a"]
                for name, sec in md.stage_seconds.items()]
        run_cards.append(Table(["stage", "time", "share of elapsed"], rows, "Stage timings",
                               numeric=(1, 2)))
    else:
        notes.append(_missing("Stage timings not available (no stage_seconds block in "
                              "run_metadata.json)"))
    if md.counts is not None:
        run_cards.append(KeyValues([(k, fmt(getattr(md.counts, k), u)) for k, u in COUNT_KEYS],
                                   caption="Counts"))
    else:
        notes.append(_missing("Counts not available (no counts block in run_metadata.json)"))
    cfg = md.config
    if cfg:
        # the resolved configuration is echoed as saved (free-form: any RunConfig version)
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
    if md.dataset_scale_info is not None:
        units = {"N": "px", "nphotons": "photons/pattern", "batch_mean_sum_intensity": "photons",
                 "dataset_scale": "sqrt(photons)", "fallback_scale": "sqrt(photons)"}
        config_cards.append(KeyValues([(k, fmt(v, units.get(k, "")) if _is_num(v) else _value(v))
                                       for k, v in md.dataset_scale_info.recorded().items()],
                                      caption="Dose (dataset) scale"))
    if md.geometry is not None:
        config_cards.append(_geometry_block(md.geometry))
    prof = md.profile
    if prof is not None:
        items = [("profile", fmt(prof.name)), ("active", fmt(prof.active)),
                 ("applied", _value(prof.applied))]
        items += [(f"skipped: {k}", _value(v)) for k, v in prof.skipped.items()]
        config_cards.append(KeyValues(items, caption="Stable profile"))
    prov = _provenance_block(md.provenance)
    (config_cards if isinstance(prov, KeyValues) else notes).append(prov)
    if md.cli_args is not None:
        tail.append(Details("Command-line arguments", [Pre(_value(md.cli_args))]))
    blocks: list = [Group(run_cards)] + ([Group(config_cards)] if config_cards else [])
    return Section("overview", "Overview", blocks + notes + tail)


def _geometry_block(g: GeometryBlock) -> KeyValues:
    """The physical geometry of a file-loaded run (lengths in metres shown in nm / µm / mm)."""
    length = _length
    items = [("source format", fmt(g.source_format)), ("source file", fmt(g.source_file)),
             ("photon energy", fmt(g.photon_energy_eV, "eV")),
             ("wavelength", length(g.wavelength_m)),
             ("detector distance", length(g.detector_distance_m)),
             ("detector pixel", length(g.detector_pixel_width_m)),
             ("object pixel (x)", length(g.object_pixel_width_m)),
             ("object pixel (y)", length(g.object_pixel_height_m))]
    if g.missing:
        items.append(("unknown (not in the file)", ", ".join(g.missing)))
    return KeyValues(items, caption="Geometry (from the data file)")


def _provenance_block(prov: Provenance | None) -> KeyValues | Para:
    if prov is None:
        return _missing("Provenance not available (no provenance block in run_metadata.json)")
    commit = prov.git_commit
    dirty = prov.git_dirty
    items = [("package version", fmt(prov.package_version)),
             ("git commit", "n/a (not a git checkout)" if not commit else
              f"{commit}" + (" (uncommitted changes)" if dirty else " (clean)" if dirty is False
                             else ""))]
    items += [(f"environment: {k}", _value(v)) for k, v in prov.environment.recorded().items()]
    items += [(f"seed: {k}", _value(v)) for k, v in prov.seeds.items()]
    if prov.dataset_source is not None:
        items += [(f"dataset: {k}", _value(v)) for k, v in prov.dataset_source.recorded().items()]
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


def _training_section(md: RunMetadata, d: _Dir) -> Section:
    facts: list = []  # small tables, side by side above the figure
    blocks: list = []
    if md.training is not None:
        items = []
        for k, v in md.training.recorded().items():
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
    hist, why = d.record(TrainingHistory, HISTORY_FILE)
    if hist is None:
        blocks.append(_absent("Training curves", why))
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
    summ, why = d.record(HistorySummary, HISTORY_SUMMARY_FILE)
    if summ is not None:
        rows = []
        for name, s in summ.metrics.items():
            nan = Cell(f"yes (epoch {s.first_nan_epoch}, step {s.first_nan_step})", "bad") \
                if s.has_nan else Cell("no")
            rows.append([name, fmt(s.count), fmt(s.last), fmt(s.min), fmt(s.max), nan])
        if rows:
            facts.append(Table(["metric", "epochs", "last", "min", "max", "non-finite"], rows,
                               "History summary (train_outputs/history_summary.json)",
                               numeric=(1, 2, 3, 4)))
    else:
        facts.append(_absent("History summary", why))
    return Section("training-curves", "Training curves", [Group(facts), *blocks])


def _run_document(d: _Dir) -> Document:
    """Every record is read and validated once here; sections get typed records (None where an
    optional file is absent, with the reason)."""
    md = d.required_record(RunMetadata, RUN_METADATA_FILE)
    cmp, cmp_why = d.record(ComparisonRecord, COMPARISON_FILE)
    ist, ist_why = d.record(IntensityStats, INTENSITY_STATS_FILE)
    cons, cons_why = d.record(ConsistencyRecord, CONSISTENCY_FILE)
    if cmp is None and md.comparison is not None and not md.comparison.available:
        cmp_why = f"not available ({md.comparison.reason})"   # data without a ground truth
    sections: list[Section] = []
    if md.status == "failed":
        sections.append(_failure_section(md))
    px_m = md.geometry.object_pixel_width_m if md.geometry is not None else None
    sections += [
        _overview_run(md, d.root),
        _images_section(d, px_m),
        _training_section(md, d),
        _scale_chain_section(md, ist, ist_why),
        _metrics_section(cmp, cmp_why, md),
        _frc_section(cmp, cmp_why),
        _consistency_section(cons, cons_why),
        _label_vs_truth_section(md, ist),
        _training_labels_section(md, ist),
    ]
    scenario = md.scenario or d.root.name
    header = [("scenario", scenario), ("status", md.status), ("started", md.timestamp),
              ("directory", str(d.root)), ("report generated", _utc_now())]
    return Document(f"Run report: {scenario}", "run", header, sections)
