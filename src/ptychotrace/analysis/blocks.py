"""Per-scenario blocks of the bias analyzer: each function reads one part of a loaded run
(``bias.load_run``) into its block of the scenario summary (``bias.analyze_run``), noting what is
absent and why. Field names follow telemetry.md; the prediction-scaling rules are in the ``bias``
module docstring."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..telemetry.scale_chain import chain_ratios, stage_means, symmetry_check
from ..telemetry.stats import dig as _dig
from .ranking import THRESHOLDS, _num, _ratio


class _Absent:
    """Collects which optional blocks were missing, and why."""

    def __init__(self, files: Mapping[str, str]):
        self.reasons: dict[str, str] = dict(files)

    def need(self, value: Any, label: str, why: str = "key not present") -> Any:
        if value is None:
            self.reasons.setdefault(label, why)
        return value


def _channel_headline(ch: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(ch, Mapping):
        return None
    return {
        "count": ch.get("count"), "coverage_fraction": ch.get("coverage_fraction"),
        "mae": ch.get("mae"), "rmse": ch.get("rmse"), "max_abs": ch.get("max_abs"),
        "pearson_r": ch.get("pearson_r"), "ssim": ch.get("ssim"),
        "psnr": _dig(ch, "psnr", "value") if isinstance(ch.get("psnr"), Mapping) else ch.get("psnr"),
        "frc50": _dig(ch, "frc", "frc50"),
        "frc_half_bit_resolution": _dig(ch, "frc", "half_bit_resolution"),
        "bias_summary": ch.get("bias_summary"),
        "registration": ch.get("registration"),
        "output_range_check": ch.get("output_range_check"),
        "pred_mean": _dig(ch, "pred_stats", "mean"), "truth_mean": _dig(ch, "truth_stats", "mean"),
    }


def _comparison_block(cmp: Mapping[str, Any], absent: _Absent) -> dict[str, Any]:
    amp = absent.need(_channel_headline(cmp.get("amplitude")), "comparison_metrics.amplitude")
    phase = absent.need(_channel_headline(cmp.get("phase")), "comparison_metrics.phase")
    full = cmp.get("full_canvas")
    absent.need(full, "comparison_metrics.full_canvas")
    return {"amplitude": amp, "phase": phase, "full_canvas": full,
            "prediction_scale": cmp.get("prediction_scale")}


def _splits(sis: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    for key in ("splits", "per_split"):
        if isinstance(sis.get(key), Mapping):
            return dict(sis[key])
    return {k: v for k, v in sis.items() if k in ("train", "test") and isinstance(v, Mapping)}


def _split_parity(md: Mapping[str, Any], absent: _Absent) -> dict[str, Any]:
    sis = absent.need(md.get("split_intensity_stats"), "run_metadata.split_intensity_stats")
    if not isinstance(sis, Mapping):
        return {"available": False, "reason": "run_metadata.split_intensity_stats absent"}
    splits = _splits(sis)
    train, test = splits.get("train", {}), splits.get("test", {})
    ratio = _ratio(_num(train.get("dataset_scale")), _num(test.get("dataset_scale")))
    source = "recomputed from per-split dataset_scale (train / test)"
    if ratio is None:  # scale ~ 1/sqrt(mean summed intensity)
        r_i = _ratio(_num(test.get("batch_mean_sum_intensity")),
                     _num(train.get("batch_mean_sum_intensity")))
        ratio = None if r_i is None or r_i < 0 else math.sqrt(r_i)
        source = "recomputed from per-split batch_mean_sum_intensity: sqrt(test / train)"
    recorded_pct = _num(sis.get("train_vs_test_deviation_pct"))
    if ratio is None:
        ratio = _num(sis.get("train_vs_test_scale_ratio"))
        source = "recorded train_vs_test_scale_ratio"
    deviation = abs(ratio - 1.0) * 100.0 if ratio is not None else (
        None if recorded_pct is None else abs(recorded_pct))
    if ratio is None and deviation is not None:
        source = "recorded train_vs_test_deviation_pct"
    if deviation is None:
        return {"available": False, "reason": "no per-split scale, intensity or deviation recorded",
                "recorded": dict(sis)}
    limit = THRESHOLDS["split_parity_pct"]
    exceeds = deviation > limit
    recorded_flag = sis.get("deviation_exceeds_5pct")
    return {
        "available": True,
        "train_vs_test_scale_ratio": ratio,
        "deviation_pct": deviation,
        "threshold_pct": limit,
        "deviation_exceeds_5pct": exceeds,
        "verdict": f"beyond {limit:g}%" if exceeds else f"within {limit:g}%",
        "source": source,
        "recorded_deviation_pct": recorded_pct,
        "recorded_deviation_exceeds_5pct": recorded_flag,
        "agrees_with_recorded": None if not isinstance(recorded_flag, bool)
        else recorded_flag == exceeds,
        "splits": {k: dict(v) for k, v in splits.items()},
    }


def _label_vs_truth(md: Mapping[str, Any], ist: Mapping[str, Any] | None,
                    absent: _Absent) -> dict[str, Any]:
    lvt, source = md.get("label_vs_truth_analysis"), "run_metadata.label_vs_truth_analysis"
    if not isinstance(lvt, Mapping) and isinstance(ist, Mapping):
        lvt, source = ist.get("label_vs_truth_analysis"), "intensity_stats.label_vs_truth_analysis"
    if not isinstance(lvt, Mapping):
        absent.need(None, "run_metadata.label_vs_truth_analysis")
        return {"available": False, "reason": "no label_vs_truth_analysis recorded"}
    gap = _num(lvt.get("amplitude_gap_pct"))
    if gap is None:
        ratio = _ratio(_num(lvt.get("Y_amp_mean")), _num(lvt.get("ground_truth_amp_mean")))
        if ratio is None:
            inv = _num(lvt.get("ratio_truth_to_Y_amp_mean"))
            ratio = None if not inv else 1.0 / inv
        gap = None if ratio is None else 100.0 * (ratio - 1.0)
    verdict = lvt.get("verdict")
    inconsistent = isinstance(verdict, str) and verdict.startswith("inconsistent")
    return {"available": True, "source": source, **dict(lvt), "amplitude_gap_pct": gap,
            "gap_exceeds_threshold": None if gap is None else abs(gap) > THRESHOLDS["label_gap_pct"],
            "recorded_verdict_inconsistent": inconsistent}


def _loss_composition(md: Mapping[str, Any]) -> dict[str, Any]:
    for path in (("config", "training", "loss_weights"), ("training", "loss_weights"),
                 ("loss_weights",)):
        w = _dig(md, *path)
        if isinstance(w, Mapping):
            weights = {k: v for k, v in w.items()}
            active = [k for k, v in weights.items() if _num(v)]
            return {"available": True, "source": "run_metadata." + ".".join(path),
                    "weights": weights, "active_terms": active,
                    "label_terms_active": bool(_num(weights.get("realspace")))}
    return {"available": False, "reason": "no loss weights recorded (config.training.loss_weights "
            "or training.loss_weights)"}


def _training_nan(md: Mapping[str, Any], hist: Mapping[str, Any] | None,
                  absent: _Absent) -> dict[str, Any]:
    tr = absent.need(md.get("training"), "run_metadata.training")
    tr = tr if isinstance(tr, Mapping) else {}
    overview = _dig(hist, "nan_overview") if isinstance(hist, Mapping) else None
    detected = tr.get("nan_detected") if isinstance(tr.get("nan_detected"), bool) else None
    hist_nan = _dig(overview, "has_nan") if isinstance(_dig(overview, "has_nan"), bool) else None
    flags = [f for f in (detected, hist_nan) if f is not None]
    return {
        "available": bool(flags),
        "nan_detected": detected, "first_nan_epoch": tr.get("first_nan_epoch"),
        "first_nan_step": tr.get("first_nan_step"),
        "history_has_nan": hist_nan, "metrics_with_nan": _dig(overview, "metrics"),
        "any_nan": any(flags) if flags else None,
        "epochs_completed": tr.get("epochs_completed"), "final_loss": tr.get("final_loss"),
        "final_val_loss": tr.get("final_val_loss"),
    }


def _inference(md: Mapping[str, Any], stats: Mapping[str, Any] | None,
               absent: _Absent) -> dict[str, Any]:
    inf = absent.need(md.get("inference"), "run_metadata.inference")
    inf = dict(inf) if isinstance(inf, Mapping) else {}
    block: dict[str, Any] = {"available": bool(inf) or isinstance(stats, Mapping),
                             "run_metadata": inf or None}
    if isinstance(stats, Mapping):
        block["stats"] = {k: stats.get(k) for k in ("amplitude", "phase", "offsets", "canvas",
                                                    "coverage_fraction", "prediction_scale")}
    block["coverage_fraction"] = _num(inf.get("coverage_fraction"))
    if block["coverage_fraction"] is None and isinstance(stats, Mapping):
        block["coverage_fraction"] = _num(stats.get("coverage_fraction"))
    block["fits_canvas"] = _dig(stats, "canvas", "fits_canvas")
    nan_counts = [_dig(stats, ch, "nan_count") for ch in ("amplitude", "phase")]
    block["prediction_nan_count"] = (sum(int(v) for v in nan_counts if _num(v) is not None)
                                     if any(_num(v) is not None for v in nan_counts) else None)
    return block


def _used_scale(dsi: Mapping[str, Any] | None, iscale: Mapping[str, Any] | None
                ) -> tuple[float | None, str | None]:
    if isinstance(iscale, Mapping) and _num(iscale.get("used_value")) is not None:
        return _num(iscale["used_value"]), iscale.get("used_mode")
    mode = _dig(dsi, "used_mode") or _dig(iscale, "used_mode")
    if not isinstance(dsi, Mapping):
        return None, mode
    if mode in ("dataset", "dataset_derived"):
        return _num(dsi.get("dataset_scale")), mode
    if mode in ("closed_form", "fallback"):
        return _num(dsi.get("fallback_scale")), mode
    return None, mode


def _intensity(md: Mapping[str, Any], ist: Mapping[str, Any] | None,
               absent: _Absent) -> dict[str, Any]:
    dsi = absent.need(md.get("dataset_scale_info"), "run_metadata.dataset_scale_info")
    fpd = absent.need(md.get("forward_pass_diagnostics"), "run_metadata.forward_pass_diagnostics")
    iscale = _dig(ist, "intensity_scale")
    used, mode = _used_scale(dsi, iscale)
    return {
        "available": any(isinstance(x, Mapping) for x in (dsi, fpd, iscale)),
        "dataset_scale_info": dsi, "intensity_scale": iscale, "forward_pass_diagnostics": fpd,
        "used_scale": used, "used_mode": mode,
        "delta_scale": _num(_dig(iscale, "delta")),
        "largest_drop": _dig(ist, "largest_drop"), "normalize_gain": _dig(ist, "normalize_gain"),
        "full_chain_product": _dig(ist, "full_chain_product"),
    }


def _stages_and_invariant(ist: Mapping[str, Any] | None) -> tuple[dict, dict, dict]:
    if not isinstance(ist, Mapping) or not isinstance(ist.get("stages"), list):
        why = {"available": False, "reason": "intensity_stats.json absent or has no stages"}
        return dict(why), dict(why), dict(why)
    stages = [s for s in ist["stages"] if isinstance(s, Mapping) and "name" in s]
    norm = {"available": True, "stages": [
        {"name": s["name"], "source": s.get("source"),
         **{k: _dig(s, "stats", k) for k in ("mean", "std", "min", "max", "nan_count")},
         "count": _dig(s, "metadata", "count")} for s in stages]}
    means = stage_means(stages)
    ratios, notes = chain_ratios(means)
    recorded = ist.get("ratios") if isinstance(ist.get("ratios"), Mapping) else {}
    mismatch = {}
    for k, v in ratios.items():
        r = _num(recorded.get(k))
        if v is not None and r is not None and abs(r - v) > 1e-6 * max(abs(v), 1e-300):
            mismatch[k] = {"recorded": r, "derived": v}
    names = [s["name"] for s in stages]
    consecutive = {f"{a}->{b}": _ratio(means[b], means[a]) for a, b in zip(names, names[1:],
                                                                          strict=False)}
    derived = {"available": True, "stage_means": means, "ratios": ratios, "ratio_notes": notes,
               "consecutive": consecutive, "mismatch_with_recorded": mismatch}
    gain = _num(ist.get("normalize_gain"))
    recomputed = symmetry_check(stages, ratios, gain)
    rec_sym = ist.get("symmetry_check") if isinstance(ist.get("symmetry_check"), Mapping) else None
    rec_flag = _dig(rec_sym, "violated")
    invariant = {"available": True, "violated": recomputed["violated"],
                 "violations": recomputed["violations"],
                 "primary_deviation_source": recomputed["primary_deviation_source"],
                 "recomputed": recomputed, "recorded": rec_sym,
                 "agrees_with_recorded": rec_flag == recomputed["violated"]
                 if isinstance(rec_flag, bool) else None}
    return norm, derived, invariant


def _prediction_scaling(cmp: Mapping[str, Any], md: Mapping[str, Any]) -> dict[str, Any]:
    ps = cmp.get("prediction_scale") if isinstance(cmp.get("prediction_scale"), Mapping) else (
        md.get("prediction_scale") if isinstance(md.get("prediction_scale"), Mapping) else {})
    amp = cmp.get("amplitude") if isinstance(cmp.get("amplitude"), Mapping) else {}
    p_eval, t = _num(_dig(amp, "pred_stats", "mean")), _num(_dig(amp, "truth_stats", "mean"))
    if p_eval is None or t is None:
        return {"available": False, "reason": "comparison amplitude pred_stats/truth_stats mean "
                "absent", "prediction_scale": dict(ps) or None}
    value, mode, applied = _num(ps.get("value")), ps.get("mode"), ps.get("applied") is True
    undo = value if applied and value else 1.0  # the evaluated prediction carries the scale
    p = p_eval / undo
    p_med, t_med = (_num(_dig(amp, "pred_stats", "median")), _num(_dig(amp, "truth_stats", "median")))
    ls = ps.get("least_squares") if isinstance(ps.get("least_squares"), Mapping) else {}
    values: dict[str, float | None] = {
        "none": 1.0,
        "recorded": value if mode == "recorded" else _num(ps.get("recorded_value")),
        "least_squares": _ratio(_num(ls.get("numerator")), _num(ls.get("denominator")))
        or (value if mode == "least_squares" else None),
        "median_ratio": _ratio(t_med, None if p_med is None else p_med / undo),
        "mean_ratio": _ratio(t, p),
    }
    candidates = {}
    for name, c in values.items():
        if c is None:
            candidates[name] = {"value": None, "reason": "not recorded"}
            continue
        resid = c * p - t
        candidates[name] = {"value": c, "residual_bias_mean": resid,
                            "residual_rel": _ratio(resid, abs(t) if t else None)}
    candidates["mean_ratio"]["by_construction"] = True
    pool = [(n, c) for n, c in candidates.items() if n != "mean_ratio" and c["value"] is not None]
    best_name, best = min(pool, key=lambda nc: abs(nc[1]["residual_bias_mean"]))
    ideal = candidates["mean_ratio"]["value"]
    rel = best.get("residual_rel")
    return {
        "available": True,
        "pred_mean_unscaled": p, "pred_mean_evaluated": p_eval, "truth_mean": t,
        "prediction_scale": dict(ps) or None,
        "candidates": candidates,
        "ideal": {"name": "mean_ratio", "value": ideal},
        "best": {"name": best_name, "value": best["value"],
                 "residual_bias_mean": best["residual_bias_mean"], "residual_rel": rel,
                 "gap_to_ideal_pct": None if not ideal else 100.0 * (best["value"] / ideal - 1)},
        "scale_explains_bias": bool(best_name != "none" and rel is not None
                                    and abs(rel) <= THRESHOLDS["model_output_rel"]
                                    and abs(candidates["none"]["residual_rel"] or 0)
                                    > THRESHOLDS["model_output_rel"]),
    }
