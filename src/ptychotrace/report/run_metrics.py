"""Run report sections on numbers: the scale chain, comparison metrics, FRC, labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..format import format_resolution
from ..telemetry.scale_chain import RATIO_DEFS
from ..telemetry.stats import dig as _dig
from .common import (
    AMP_UNIT,
    PHASE_UNIT,
    _auto,
    _Dir,
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
        return lambda b, unit: format_resolution(b["frc"], key) \
            if isinstance(b.get("frc"), Mapping) else "n/a (no FRC block)"

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
        rows.append([ch, format_resolution(f, "half_bit_resolution"),
                     fmt(f.get("half_bit_crossing_frequency"), "cycles/px"),
                     format_resolution(f, "frc50"), fmt(f.get("frc50_crossing_frequency"), "cycles/px"),
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
