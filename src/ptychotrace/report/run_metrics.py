"""Run report sections on numbers: the scale chain, comparison metrics, FRC, labels.

Every section takes typed records (records/): a renamed or missing required field fails when
the report reads the file, not as a silent "n/a" here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..evaluate.consistency import CONSISTENCY_DIR, CONSISTENCY_JSON, ConsistencyRecord
from ..format import format_resolution
from ..records.comparison import ChannelMetrics, ComparisonHeadline, ComparisonRecord, Frc
from ..records.intensity_stats import IntensityStats
from ..records.run_metadata import RunMetadata
from ..telemetry.scale_chain import RATIO_DEFS
from .common import (
    AMP_UNIT,
    PHASE_UNIT,
    _absent,
    _auto,
    _is_num,
    _missing,
    _non_finite_note,
    _pct_of_fraction,
    _shape,
    _value,
    _with_note,
    fmt,
)
from .figures import frc_png
from .html import (
    Cell,
    Figure,
    Group,
    KeyValues,
    Para,
    Section,
    Table,
)


def _scale_chain_section(md: RunMetadata, ist: IntensityStats | None,
                         ist_why: str | None) -> Section:
    """Stage and ratio tables, the symmetry verdict, then the small tables side by side (chain,
    dose scale, forward pass, split parity) and the split-parity verdict."""
    blocks: list = []
    small: list = []
    after: list = []
    if ist is None:
        blocks.append(_absent("Scale chain", ist_why))
    else:
        blocks, small = _scale_chain_blocks(ist)
    fpd = md.forward_pass_diagnostics   # free-form: the trainer's diagnostics, shown as recorded
    if fpd is not None:
        small.append(KeyValues([(k, _auto(k, v)) for k, v in fpd.items()],
                               caption="Forward pass diagnostics"))
    else:
        after.append(_missing("Forward pass diagnostics not available (no forward_pass_diagnostics "
                              "block in run_metadata.json)"))
    sis = md.split_intensity_stats
    if sis is not None:
        small.append(Table(["split", "batch mean summed intensity", "samples", "dataset scale"],
                           [[k, fmt(v.batch_mean_sum_intensity, "photons"), fmt(v.n_samples),
                             fmt(v.dataset_scale, "sqrt(photons)")]
                            for k, v in (("train", sis.train), ("test", sis.test))],
                           "Split intensity parity", numeric=(1, 2, 3)))
        bad = bool(sis.deviation_exceeds_5pct)
        after.append(Para(f"Train/test scale ratio {fmt(sis.train_vs_test_scale_ratio)}, "
                          f"deviation {fmt(sis.train_vs_test_deviation_pct, '%')}: "
                          + ("exceeds 5 %." if bad else "within 5 %."), "bad" if bad else "ok"))
    else:
        after.append(_missing("Split intensity parity not available (no split_intensity_stats "
                              "block in run_metadata.json)"))
    return Section("scale-chain", "Scale chain", blocks + ([Group(small)] if small else []) + after)


def _stage_rows(ist: IntensityStats, expected: dict[str, float]) -> list[list[str | Cell]]:
    # a named ratio is shown on the row of its numerator stage ("into" that stage)
    into: dict[str, list[str]] = {}
    for name, value in ist.ratios.items():
        if name in RATIO_DEFS:
            exp = f", expected {fmt(expected[name])}" if name in expected else ""
            into.setdefault(RATIO_DEFS[name][0], []).append(f"{name} = {fmt(value)}{exp}")
    rows = []
    for s in ist.stages:
        st, meta = s.stats, s.metadata
        nan = st.nan_count
        rows.append([s.name, fmt(s.source), fmt(meta.domain), _shape(st.shape), fmt(meta.count),
                     fmt(st.mean), fmt(st.std), fmt(st.min), fmt(st.max),
                     Cell(fmt(nan), "bad") if nan > 0 else fmt(nan),
                     "; ".join(into[s.name]) if s.name in into else "-"])
    return rows


def _scale_chain_blocks(ist: IntensityStats) -> tuple[list, list]:
    """(stage and ratio tables with the symmetry verdict, small key/value tables)."""
    blocks: list = []
    small: list = []
    sym = ist.symmetry_check
    expected = sym.expected if sym is not None else {}
    rows = _stage_rows(ist, expected)
    if rows:
        blocks.append(Table(["stage", "source", "domain", "shape", "count", "mean", "std", "min",
                             "max", "NaN", "ratio into this stage"], rows,
                            "Stages (intensity_stats.json), in pipeline order",
                            numeric=(4, 5, 6, 7, 8, 9)))
    else:
        blocks.append(_missing("not available (intensity_stats.json has no stages)"))
    if ist.missing_stages:
        blocks.append(Para("Stages not recorded: " + ", ".join(ist.missing_stages), "warn"))
    deviation = sym.relative_deviation if sym is not None else {}
    unchecked = sym.unchecked if sym is not None else {}
    violations = set(sym.violations) if sym is not None else set()
    rrows = []
    for name, value in ist.ratios.items():
        if name in violations:
            check = Cell("violated", "bad")
        elif name in expected:
            check = Cell("ok", "ok")
        else:
            check = Cell("not checked" + (f": {unchecked[name]}" if name in unchecked else ""))
        dev = deviation[name] if name in deviation else None
        rrows.append([name, ist.ratio_definitions[name] if name in ist.ratio_definitions else "",
                      fmt(value), fmt(expected[name] if name in expected else None),
                      fmt(100.0 * dev, "%") if _is_num(dev) else "n/a", check,
                      ist.ratio_notes[name] if name in ist.ratio_notes else ""])
    if rrows:
        blocks.append(Table(["ratio", "definition", "value", "expected", "deviation", "symmetry check",
                             "note"], rrows, "Ratios of stage means", numeric=(2, 3, 4)))
    if sym is not None:
        tol_text = fmt(100.0 * sym.tolerance, "%")
        src = sym.primary_deviation_source or "n/a"
        if sym.violated:
            blocks.append(Para(f"Symmetry check VIOLATED ({', '.join(sorted(violations))}; "
                               f"tolerance {tol_text}); primary deviation source: {src}.", "bad"))
        else:
            blocks.append(Para(f"Symmetry check holds (tolerance {tol_text}); largest deviation at "
                               f"stage {src}.", "ok"))
    chain = ist.full_chain
    items = [("input-normalisation gain", fmt(ist.normalize_gain)),
             ("full-chain product", fmt(ist.full_chain_product)),
             ("product / gain (should be ~1)",
              fmt(chain.product_over_normalize_gain if chain is not None else None))]
    drop = ist.largest_drop
    if drop is not None:
        items.append(("largest change", f"{drop.name} = {fmt(drop.value)} "
                                        f"(|log10| {fmt(drop.abs_log10)})"))
    small.append(KeyValues(items, caption="Chain"))
    if ist.intensity_scale is not None:
        small.append(KeyValues([(k, fmt(v, "sqrt(photons)") if _is_num(v) and k != "ratio"
                                 else _value(v)) for k, v in ist.intensity_scale.recorded().items()],
                               caption="Intensity (dose) scale: used vs held by the model"))
    return blocks, small


#: Rows of the metrics table that comparison_metrics.json also has on the full canvas.
FULL_CANVAS_ROWS = ("pixels compared", "MAE", "RMSE", "Pearson r", "SSIM", "PSNR")


def _metric_rows() -> list[tuple[str, Callable[[Any, str], str]]]:
    """Rows of the metrics table: (label, getter(channel record, unit) -> cell text). The
    channel is a ChannelMetrics (covered region) or a CanvasChannel (full canvas: only the
    FULL_CANVAS_ROWS are asked of it)."""
    def psnr(b: Any, unit: str) -> str:
        p = b.psnr
        if p.value is None:
            return f"n/a ({p.note_for('value') or 'not computed'})"
        return f"{fmt(p.value, 'dB')} (peak {fmt(p.peak, unit)})"

    def frc(key: str):
        return lambda b, unit: format_resolution(b.frc, key) if b.frc is not None \
            else "n/a (no FRC block)"

    def bias(key: str):
        return lambda b, unit: fmt(getattr(b.bias_summary, key), unit) \
            if b.bias_summary is not None else "n/a"

    def stats_mean(which: str):
        return lambda b, unit: fmt(getattr(b, which).mean, unit) \
            if getattr(b, which) is not None else "n/a"

    def at_bound(b: ChannelMetrics, unit: str) -> str:
        rc = b.output_range_check
        if rc is None:
            note = b.note_for("output_range_check")
            return f"n/a ({note})" if note else "n/a"
        return f"{_pct_of_fraction(rc.fraction_at_bound)} (bound {fmt(rc.bound)})"

    return [
        ("pixels compared", lambda b, u: fmt(b.count)),
        ("coverage fraction", lambda b, u: _pct_of_fraction(b.coverage_fraction)),
        ("MAE", lambda b, u: _with_note(b, "mae", u)),
        ("RMSE", lambda b, u: _with_note(b, "rmse", u)),
        ("max |error|", lambda b, u: _with_note(b, "max_abs", u)),
        ("Pearson r", lambda b, u: _with_note(b, "pearson_r")),
        ("SSIM", lambda b, u: _with_note(b, "ssim")),
        ("PSNR", psnr),
        ("FRC 1/2-bit resolution", frc("half_bit_resolution")),
        ("FRC 0.5 resolution", frc("frc50")),
        ("bias mean (pred - truth)", bias("mean")),
        ("bias median", bias("median")),
        ("bias p05 / p95", lambda b, u: f"{fmt(b.bias_summary.p05, u)} / "
                                        f"{fmt(b.bias_summary.p95, u)}"
         if b.bias_summary is not None else "n/a"),
        ("prediction mean", stats_mean("pred_stats")),
        ("truth mean", stats_mean("truth_stats")),
        ("at activation bound", at_bound),
    ]


def _no_truth_blocks(head: ComparisonHeadline) -> list:
    """What a run without a ground truth records instead of metrics (scenarios/no_truth.py):
    the reconstruction, the probe, the scan and the detector mask, lengths in nm / µm where the
    geometry is known."""
    cards: list = []
    r = head.reconstruction
    if r is not None:
        a, ph = r.amplitude_covered, r.phase_covered_rad
        cards.append(KeyValues([
            ("stitched shape", _shape(r.shape)), ("coverage", _pct_of_fraction(r.coverage_fraction)),
            ("field of view", " x ".join(r.field_of_view)),
            ("object pixel", r.object_pixel or "unknown (positions in object pixels)"),
            ("amplitude mean / std", f"{fmt(a.mean)} / {fmt(a.std)}"),
            ("amplitude min / max", f"{fmt(a.min)} / {fmt(a.max)}"),
            ("phase mean / std", f"{fmt(ph.mean, PHASE_UNIT)} / {fmt(ph.std, PHASE_UNIT)}"),
        ], caption="Reconstruction (covered region)"))
    p = head.probe
    if p is not None:
        sc = p.scaling or {}   # free-form: the loader's record of how the probe was scaled
        cards.append(KeyValues([
            ("energy", fmt(p.energy_photons, "photons")), ("shape", _shape(p.shape)),
            ("width", p.width), ("modes in the file", fmt(p.modes_in_file)),
            ("scale", _value(sc) if sc else "as in the file")], caption="Probe"))
    sc_ = head.scan
    if sc_ is not None:
        cards.append(KeyValues([
            ("positions", f"{sc_.positions} (train {sc_.train}, test {sc_.test})"),
            ("extent (x, y)", " x ".join(sc_.extent)),
            ("median step", sc_.median_step or "n/a")], caption="Scan"))
    if head.detector_mask is not None:
        cards.append(KeyValues([("masked detector pixels",
                                 _pct_of_fraction(head.detector_mask.masked_fraction))],
                               caption="Detector"))
    blocks: list = [Group(cards)] if cards else []
    if head.product_file:
        blocks.append(Para(f"Reconstruction written as a ptychodus product: {head.product_file}",
                           "note"))
    return blocks


def _metrics_section(cmp: ComparisonRecord | None, why: str | None, md: RunMetadata) -> Section:
    head = md.comparison
    if cmp is None and head is not None and not head.available:   # data without a ground truth
        blocks: list = [Para(f"No comparison: {head.reason}. The data-consistency section says "
                             "how well the reconstruction explains the measured counts.", "note")]
        return Section("metrics", "Metrics", blocks + _no_truth_blocks(head))
    if cmp is None:
        return Section("metrics", "Metrics", [_absent("Metrics", why)])
    blocks = []
    full = cmp.full_canvas
    columns = [("amplitude", "covered region", cmp.amplitude, AMP_UNIT),
               ("amplitude", "full canvas", full.amplitude, AMP_UNIT),
               ("phase", "covered region", cmp.phase, PHASE_UNIT),
               ("phase", "full canvas", full.phase, PHASE_UNIT)]
    rows = []
    for label, getter in _metric_rows():
        row: list[str | Cell] = [label]
        for _, region, blk, unit in columns:
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
    frame: list = [KeyValues([(k, _value(v)) for k, v in cmp.prediction_scale.recorded().items()],
                             caption="Prediction scale (amplitude, before the metrics)")]
    items = []
    for k, v in cmp.registration.recorded().items():
        unit = "px" if k.endswith("_px") else ""
        items.append((k, ", ".join(fmt(x, unit) for x in v) if isinstance(v, list)
                      else fmt(v, unit) if _is_num(v) else _value(v)))
    frame.append(KeyValues(items, caption="Registration (prediction onto truth)"))
    other = [("phase offset removed", fmt(cmp.phase_offset_removed_rad, PHASE_UNIT)),
             ("phase offset weighting", fmt(cmp.phase_offset_weighting)),
             ("phase ramp", _value(cmp.phase_ramp) if cmp.phase_ramp else "not removed"),
             ("canvas shape", _shape(cmp.canvas_shape)),
             ("coverage fraction (canvas)", _pct_of_fraction(cmp.coverage_fraction))]
    frame.append(KeyValues(other, caption="Evaluation frame"))
    return Section("metrics", "Metrics", [*blocks, Group(frame)])


def _frc_section(cmp: ComparisonRecord | None, why: str | None) -> Section:
    if cmp is None:
        return Section("frc", "Fourier ring correlation", [_absent("FRC", why)])
    frcs: dict[str, Frc | None] = {ch: cmp.channel(ch).frc for ch in ("amplitude", "phase")}
    blocks: list = []
    png = frc_png(frcs)
    if png is None:
        blocks.append(_missing("FRC curves not available (no frc.curve in the amplitude or phase "
                               "block of comparison_metrics.json)"))
    else:
        blocks.append(Figure(png, "FRC of prediction vs truth on the covered region, with the "
                                  "1/2-bit threshold (dashed) and the 0.5 line (dotted); vertical "
                                  "lines mark the crossings.", "FRC curves", name="frc.png"))
    rows = []
    for ch, f in frcs.items():
        if f is None:
            rows.append([ch, "n/a", "n/a", "n/a", "n/a", "n/a", "no frc block"])
            continue
        notes = "; ".join(str(n) for n in (f.note_for("half_bit_resolution"), f.note_for("frc50"),
                                           f.note) if n)
        rows.append([ch, format_resolution(f, "half_bit_resolution"),
                     fmt(f.half_bit_crossing_frequency, "cycles/px"),
                     format_resolution(f, "frc50"), fmt(f.frc50_crossing_frequency, "cycles/px"),
                     f"{fmt(f.window)}, box {_shape(f.shape)}", notes or "-"])
    blocks.append(Table(["channel", "1/2-bit resolution", "1/2-bit crossing", "FRC 0.5 resolution",
                         "0.5 crossing", "window, region", "notes"], rows,
                        "Crossings (resolution = 1 / crossing frequency)", numeric=(1, 2, 3, 4)))
    return Section("frc", "Fourier ring correlation", blocks)


CONSISTENCY_FILE = f"{CONSISTENCY_DIR}/{CONSISTENCY_JSON}"


def _consistency_section(cons: ConsistencyRecord | None, why: str | None) -> Section:
    """How well each reconstruction explains the measured counts (evaluate/consistency.py):
    the normalised Poisson deviance D/E per pattern (~1 when consistent, at any dose)."""
    title = "Data consistency"
    if cons is None:
        return Section("data-consistency", title, [_absent("Data consistency", why)])
    scored = [(label, s) for label, s in (("final reconstruction", cons.final),
                                          ("network only (before refinement)", cons.network_only),
                                          ("ground truth", cons.truth))]
    bound = next((s.z_bound for _, s in scored if s is not None), None)
    rows = []
    for label, s in scored:
        if s is None:
            rows.append([label, *(["n/a"] * 7), "not scored"])
            continue
        rows.append([label, fmt(s.n_patterns), fmt(s.normalised_median), fmt(s.normalised_p90),
                     fmt(s.z_aggregate), _pct_of_fraction(s.fraction_beyond_bound),
                     _pct_of_fraction(s.relative_misfit_median), fmt(s.explained_vs_flat),
                     s.table or "-"])
    blocks: list = [Table(["reconstruction", "patterns", "median D/E", "p90 D/E", "z aggregate",
                           f"patterns beyond z > {fmt(bound)}", "median relative misfit",
                           "explained vs flat object", "per-pattern table"], rows,
                          f"Normalised Poisson deviance of the measured counts ({CONSISTENCY_FILE})",
                          numeric=(1, 2, 3, 4, 5, 6, 7)),
                    Para(cons.normalisation, "note")]
    ph = cons.photons
    blocks.append(Group([
        KeyValues([("nominal", fmt(ph.nominal, "photons/pattern")),
                   ("measured train / test", f"{fmt(ph.measured_train)} / {fmt(ph.measured_test)}"),
                   ("predicted train / test",
                    f"{fmt(ph.predicted_train)} / {fmt(ph.predicted_test)}"),
                   ("measured / predicted", fmt(ph.measured_over_predicted)),
                   ("probe energy", fmt(ph.probe_energy_photons, "photons")),
                   ("measured / probe energy", fmt(ph.measured_over_probe_energy))],
                  caption="Photons per pattern"),
        KeyValues([("valid detector pixels", f"{cons.valid_pixels} of {cons.detector_pixels}")],
                  caption="Detector")]))
    blocks += [Para(n, "note") for n in cons.notes]
    return Section("data-consistency", title, blocks)


def _from_either(md: RunMetadata, ist: IntensityStats | None, key: str):
    """(block, source file): run_metadata.json's ``key`` block first, else intensity_stats.json's
    (both record the label blocks); (None, run_metadata.json) when neither has it."""
    block = getattr(md, key)
    if block is None and ist is not None and getattr(ist, key) is not None:
        return getattr(ist, key), "intensity_stats.json"
    return block, "run_metadata.json"


def _not_in_either(key: str) -> str:
    return f"not available (no {key} block in run_metadata.json or intensity_stats.json)"


def _label_vs_truth_section(md: RunMetadata, ist: IntensityStats | None) -> Section:
    """run_metadata.json's block first, else intensity_stats.json's (both record it)."""
    lvt, src = _from_either(md, ist, "label_vs_truth_analysis")
    if lvt is None:
        return Section("label-vs-truth", "Labels vs ground truth",
                       [_missing(f"Labels vs truth {_not_in_either('label_vs_truth_analysis')}")])
    verdict = lvt.verdict or (f"n/a ({lvt.reason})" if lvt.reason else "n/a")
    tone = "ok" if verdict.startswith("consistent") else (
        "warn" if verdict.startswith(("undetermined", "n/a")) else "bad")
    blocks: list = [Para(f"Verdict: {verdict}", tone)]
    items = []
    for k, v in lvt.recorded().items():   # every recorded number, named as recorded
        if k == "verdict":
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


def _training_labels_section(md: RunMetadata, ist: IntensityStats | None) -> Section:
    tl, src = _from_either(md, ist, "training_labels")
    if tl is None:
        return Section("training-labels", "Training labels",
                       [_missing(f"Training labels {_not_in_either('training_labels')}")])
    rows = []
    for name, st in tl.labels.items():
        parts = [(name, st)]
        if st.complex:
            parts = [(f"{name} |amplitude|", st.amplitude), (f"{name} phase (rad)", st.phase)]
        for label, vals in parts:
            rows.append([label, _shape(st.shape), fmt(st.dtype),
                         *(fmt(getattr(vals, k) if vals is not None else None)
                           for k in ("min", "max", "mean", "std")),
                         Cell(fmt(st.nan_count), "bad") if st.nan_count > 0 else fmt(st.nan_count),
                         f"{fmt(st.finite_count)} / {fmt(st.total_count)}", fmt(st.note or "")])
    blocks: list = []
    if rows:
        blocks.append(Table(["label", "shape", "dtype", "min", "max", "mean", "std", "NaN",
                             "finite / total", "what it is (units)"], rows,
                            f"Labels the model is trained against ({src}), before the first step",
                            numeric=(3, 4, 5, 6, 7, 8)))
    else:
        blocks.append(_missing(f"not available (training_labels in {src} holds no label)"))
    if tl.missing:
        blocks.append(Table(["label not carried", "reason"],
                            [[k, _value(v)] for k, v in tl.missing.items()], "Missing labels"))
    return Section("training-labels", "Training labels", blocks)
