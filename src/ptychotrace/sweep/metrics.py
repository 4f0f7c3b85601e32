"""The numbers of finished points, read from their typed records, and their aggregates."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .plan import BASELINE_METADATA, COMPARISON

# --------------------------------------------------------------------------------------------
# Metrics from disk
# --------------------------------------------------------------------------------------------


NYQUIST_PX = 2.0


def _half_bit_px(frc) -> float | None:
    """The 1/2-bit resolution in pixels; a curve that never falls below the threshold is
    resolved to the Nyquist limit (2 px), a number a table can average, not a missing value."""
    if frc is None:
        return None
    if frc.half_bit_resolution is None and frc.half_bit_crossed is False:
        return NYQUIST_PX
    return frc.half_bit_resolution


def _quality(cmp) -> dict:
    """The quality metrics of a ComparisonRecord (typed access, no fallbacks)."""
    a, p, scale = cmp.amplitude, cmp.phase, cmp.prediction_scale
    ls = scale.least_squares
    return {
        "amplitude_ssim": a.ssim,
        "amplitude_pearson_r": a.pearson_r,
        "amplitude_frc_half_bit_px": _half_bit_px(a.frc),
        "phase_ssim": p.ssim,
        "phase_pearson_r": p.pearson_r,
        "amplitude_bias_mean": a.bias_summary.mean if a.bias_summary else None,
        "phase_bias_mean": p.bias_summary.mean if p.bias_summary else None,
        "least_squares_scale": ls.value if ls else None,
        "prediction_scale_applied": scale.value if scale.applied else None,
        "coverage_fraction": cmp.coverage_fraction,
    }


def _finished(meta_cls, meta_path: Path, cmp_path: Path):
    """(metadata, comparison) of a finished part, or None when either is missing or invalid."""
    from ..records.base import RecordError
    from ..records.comparison import ComparisonRecord

    try:
        meta = meta_cls.read(meta_path)
        cmp = ComparisonRecord.read(cmp_path)
    except RecordError:
        return None
    return (meta, cmp) if meta.status == "ok" else None


def pinn_metrics(run_dir: Path) -> dict | None:
    """Summary metrics of a finished PINN run (None if it did not finish)."""
    from ..records.run_metadata import RunMetadata

    got = _finished(RunMetadata, Path(run_dir) / "run_metadata.json", Path(run_dir) / COMPARISON)
    if got is None or got[0].inference is None:
        return None
    meta, cmp = got
    inf = meta.inference
    infer_s, net_s = inf.seconds.total, inf.seconds.network
    pats = inf.patterns_used
    pps = inf.patterns_per_second
    train_s = meta.stage_seconds.get("train")
    per = infer_s / pats if pats else None
    out = _quality(cmp)
    out.update({
        "train_seconds": train_s, "inference_seconds": infer_s,
        "inference_patterns_per_second": pps, "baseline_seconds": None, "baseline_iterations": None,
        "seconds_per_pattern": per,
        "total_seconds_per_pattern": ((train_s or 0.0) + infer_s) / pats
        if (pats and train_s is not None) else None,
        "network_seconds_per_pattern": net_s / pats if (net_s is not None and pats) else None,
        "patterns": int(pats) if pats else None,
    })
    return out


def speedup_vs_baseline(block: dict) -> dict | None:
    """Baseline seconds per pattern over the PINN's (means across seeds), for the whole default
    inference and for the network alone; None without both methods."""
    if "pinn" not in block or "baseline" not in block:
        return None
    base = block["baseline"]["mean"].get("seconds_per_pattern")
    pinn = block["pinn"]["mean"]

    def ratio(key: str) -> float | None:
        v = pinn.get(key)
        return base / v if (base and v) else None

    return {"inference": ratio("seconds_per_pattern"),
            "network_only": ratio("network_seconds_per_pattern"),
            "definition": "baseline seconds per reconstructed pattern / PINN seconds per pattern "
                          "(> 1: the PINN is faster); PINN training time excluded"}


#: The quality metric of the issue's goal (PINN at or above the baseline at low dose).
VERDICT_METRIC = "amplitude_ssim"


def quality_vs_baseline(block: dict, metric: str = VERDICT_METRIC) -> dict | None:
    """PINN minus baseline on ``metric``, from the seed means and seed by seed (seeds where both
    methods have a result); None without both methods or without a pair."""
    if "pinn" not in block or "baseline" not in block:
        return None
    pinn = {s["seed_index"]: (s["metrics"] or {}).get(metric) for s in block["pinn"]["per_seed"]}
    base = {s["seed_index"]: (s["metrics"] or {}).get(metric)
            for s in block["baseline"]["per_seed"]}
    pairs = [(pinn[k], base[k]) for k in sorted(pinn)
             if pinn.get(k) is not None and base.get(k) is not None]
    if not pairs:
        return None
    mean_p = sum(p for p, _ in pairs) / len(pairs)
    mean_b = sum(b for _, b in pairs) / len(pairs)
    return {"metric": metric, "pinn_mean": mean_p, "baseline_mean": mean_b,
            "difference": mean_p - mean_b, "pinn_at_or_above": mean_p >= mean_b,
            "seeds_compared": len(pairs), "seeds_pinn_at_or_above": sum(p >= b for p, b in pairs),
            "definition": "means over the seeds where both methods have a result; difference = "
                          "PINN - baseline"}


def baseline_metrics(baseline_dir: Path) -> dict | None:
    from ..records.baseline import BaselineMetadata

    got = _finished(BaselineMetadata, Path(baseline_dir) / BASELINE_METADATA,
                    Path(baseline_dir) / COMPARISON)
    if got is None or got[0].reconstruction is None:
        return None
    meta, cmp = got
    rec = meta.reconstruction
    out = _quality(cmp)
    out.update({
        "train_seconds": None, "inference_seconds": None, "inference_patterns_per_second": None,
        "baseline_seconds": rec.wall_time_s, "baseline_iterations": float(rec.iterations),
        "seconds_per_pattern": rec.seconds_per_pattern,
        "total_seconds_per_pattern": rec.seconds_per_pattern,
        "network_seconds_per_pattern": None, "patterns": rec.n_patterns,
    })
    return out


def aggregate(values: list[float | None]) -> dict:
    """mean and sample std (ddof 1; null with fewer than 2 values) over the non-null values."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    return {"n": int(v.size), "mean": float(v.mean()) if v.size else None,
            "std": float(v.std(ddof=1)) if v.size > 1 else None,
            "min": float(v.min()) if v.size else None, "max": float(v.max()) if v.size else None}
