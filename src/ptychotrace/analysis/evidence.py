"""Gather the decision procedure's evidence (``rules.Evidence``) from one loaded run.

All reading of run-directory records for the verdict happens here (and in ``bias.load_run``), so
a change of record schema touches one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..evaluate.consistency import ConsistencyRecord
from ..telemetry.stats import dig
from .rules import Evidence


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _ratio(a: Any, b: Any) -> float | None:
    a, b = _num(a), _num(b)
    return None if a is None or b is None or b == 0 else a / b


def _shift(cmp: Mapping[str, Any]) -> tuple[list[float] | None, bool]:
    """Largest registration shift [dy, dx] of amplitude/phase and whether it was refused."""
    best, mag = None, -1.0
    for ch in ("amplitude", "phase"):
        s = dig(cmp, ch, "registration", "shift_px")
        if isinstance(s, (list, tuple)) and len(s) == 2 and all(_num(v) is not None for v in s):
            m = math.hypot(*s)
            if m > mag:
                best, mag = [float(v) for v in s], m
    reg_error = _num(dig(cmp, "registration", "error"))
    refused = (dig(cmp, "registration", "applied") is False
               and "exceeds" in str(dig(cmp, "registration", "note") or "")
               and (reg_error is None or reg_error >= 0.5))
    return best, refused


def gather_evidence(s: Mapping[str, Any], md: Mapping[str, Any], cmp: Mapping[str, Any],
                    consistency: ConsistencyRecord | None, notes: list[str]) -> Evidence:
    """Evidence from the analyzer's scenario block ``s`` (bias.analyze_run), run_metadata,
    comparison_metrics and the consistency record (None for runs made before it existed)."""
    sis = md.get("split_intensity_stats") if isinstance(md.get("split_intensity_stats"),
                                                         Mapping) else {}
    mpp = md.get("measured_photons_per_pattern") if isinstance(
        md.get("measured_photons_per_pattern"), Mapping) else {}
    # Simulated runs record each split's unit-dose intensity |F(P0 O)|^2 of the truth: the
    # physics' prediction of the test/train photon ratio, recorded before any noise.
    predicted = None
    if dig(md, "provenance", "dataset_source", "type") in ("simulated", None):
        predicted = _ratio(dig(sis, "test", "batch_mean_sum_intensity"),
                           dig(sis, "train", "batch_mean_sum_intensity"))
    shift, refused = _shift(cmp)
    ls = _num(dig(cmp, "prediction_scale", "least_squares", "value"))
    if ls is None:
        ls = _ratio(dig(cmp, "prediction_scale", "least_squares", "numerator"),
                    dig(cmp, "prediction_scale", "least_squares", "denominator"))
    lvt = s.get("label_vs_truth") or {}
    notes = list(notes)
    if consistency is None:
        notes.append("no consistency record (consistency/consistency.json): the data "
                     "consistency and input checks were not made; run with the current runner")
    err = md.get("error") if isinstance(md.get("error"), Mapping) else {}
    error = f"{err.get('type', 'error')}: {str(err.get('message', ''))[:200]}" if err else None
    return Evidence(
        status=md.get("status"), failed_stage=md.get("failed_stage"), error=error,
        consistency=consistency,
        training_nan=dig(s, "training_nan", "any_nan"),
        label_gap_pct=_num(lvt.get("amplitude_gap_pct")) if lvt.get("available") else None,
        label_terms_active=dig(s, "loss_composition", "label_terms_active"),
        pearson_amp=_num(dig(cmp, "amplitude", "pearson_r")), ls_scale=ls,
        mean_ratio_scale=_num(dig(s, "prediction_vs_truth_scaling", "ideal", "value")),
        fraction_at_bound_final=_num(dig(cmp, "amplitude", "output_range_check",
                                         "fraction_at_bound")),
        shift_px=shift, shift_refused=refused,
        recorded_parity_pct=_num(sis.get("train_vs_test_deviation_pct")),
        recorded_predicted_ratio=predicted,
        recorded_measured_ratio=_ratio(mpp.get("test"), mpp.get("train")),
        nominal_photons=_num(dig(md, "dataset_scale_info", "nphotons")),
        measured_train_photons=_num(mpp.get("train")),
        has_truth=not (isinstance(cmp, Mapping) and cmp.get("available") is False), notes=notes)
