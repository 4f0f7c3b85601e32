"""The scale chain (``intensity_stats.json``) and the training-label telemetry blocks.

Stages (recorded with ``RunRecorder.add_intensity_stage``; names fixed by telemetry.md)::

    raw_diffraction        every simulated/loaded pattern, before grouping
    grouped_diffraction    the grouped training patterns, before input normalisation
    grouped_X_full         the same patterns after input normalisation (X_in = gain * X)
    container_X            the training container's X (what the network is fed)
    training_labels_Y_amp  the amplitude labels; optional training_labels_Y_I
    inference_prediction   the stitched predicted amplitude (before any prediction scale)
    scaler_output          optional: the prediction after the prediction scale
    ground_truth_amp       the truth amplitude over the region compared (needed for
                           prediction_to_truth)

Record ``raw_diffraction``, ``grouped_diffraction`` and ``grouped_X_full`` in the *same domain*
(amplitude ``sqrt(counts)``; say so with ``metadata={"domain": "amplitude"}``): the input
normalisation multiplies amplitudes by the gain, so only then is the ratio of means the gain.

Ratios are quotients of stage means (float64)::

    raw_to_grouped          = mean(grouped_diffraction) / mean(raw_diffraction)
    grouped_to_normalized   = mean(grouped_X_full)      / mean(grouped_diffraction)
    normalized_to_container = mean(container_X)         / mean(grouped_X_full)
    prediction_to_truth     = mean(inference_prediction) / mean(ground_truth_amp)
    scaled_prediction_to_truth = mean(scaler_output)    / mean(ground_truth_amp)   (optional)

A ratio is ``None`` with a reason in ``ratio_notes`` when a stage is missing, its mean is None,
or the denominator is zero. ``largest_drop`` is the ratio furthest from 1 in log terms
(``|log10 r|``). ``full_chain_product`` = raw_to_grouped * grouped_to_normalized *
normalized_to_container = mean(container_X) / mean(raw_diffraction); divided by the recorded
``normalize_gain`` it should be close to 1.

Symmetry check (count-domain contract, physics.md section 3). Each checked ratio has an expected
value; it is violated when ``|actual / expected - 1| > tolerance`` (0.05):

    grouped_to_normalized    expected = normalize_gain (the recorded input-normalisation gain):
                             the normalisation is one multiplicative gain on amplitudes, applied
                             once, to the same patterns. Unchecked when the gain is not
                             recorded or the two stages declare different domains.
    normalized_to_container  expected = 1: building the container only repackages X.
    prediction_to_truth      expected = 1: under the count contract the network returns the
                             object in object units, so the prediction matches the truth.

``raw_to_grouped`` is not checked: grouping picks the training split, whose mean legitimately
differs from the whole set with the object content (split parity is checked elsewhere).
``primary_deviation_source`` names the *stage* at the output end of the checked ratio with the
largest ``|log(actual / expected)|`` (``primary_deviation_ratio`` names the ratio); it is set even
when nothing is violated, and None when nothing could be checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .stats import array_stats, format_number

SCHEMA_VERSION = "1.0"
SYMMETRY_TOLERANCE = 0.05
LABEL_TOLERANCE = 0.05

REQUIRED_STAGES = ("raw_diffraction", "grouped_diffraction", "grouped_X_full", "container_X",
                   "training_labels_Y_amp", "inference_prediction")

#: ratio name -> (numerator stage, denominator stage)
RATIO_DEFS: dict[str, tuple[str, str]] = {
    "raw_to_grouped": ("grouped_diffraction", "raw_diffraction"),
    "grouped_to_normalized": ("grouped_X_full", "grouped_diffraction"),
    "normalized_to_container": ("container_X", "grouped_X_full"),
    "prediction_to_truth": ("inference_prediction", "ground_truth_amp"),
    "scaled_prediction_to_truth": ("scaler_output", "ground_truth_amp"),
}
CHAIN_RATIOS = ("raw_to_grouped", "grouped_to_normalized", "normalized_to_container")

#: Default notes for the training-label arrays (what each is, and its units).
LABEL_NOTES: dict[str, str] = {
    "X": "network input: normalised diffraction amplitude sqrt(counts) * input gain; dimensionless",
    "Y_amp": "object amplitude label |O_j| cut at the scan positions; object amplitude units "
             "(same as the ground-truth amplitude)",
    "Y_I": "intensity label Y_amp**2; object amplitude units squared",
    "Y_phi": "object phase label angle(O_j); radians in [-pi, pi]",
    "Y": "complex object label Y_amp * exp(i * Y_phi); amplitude in object units, phase in radians",
}
LABEL_KEYS = tuple(LABEL_NOTES)


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _quotient(num: float | None, den: float | None) -> tuple[float | None, str | None]:
    if num is None or den is None:
        return None, "mean not available"
    if den == 0:
        return None, "denominator mean is zero"
    return num / den, None


def _abs_log(r: float | None) -> float | None:
    """|log10 r|; None when r is missing; inf when r <= 0 (a sign flip is the worst deviation)."""
    if r is None:
        return None
    return abs(math.log10(r)) if r > 0 else math.inf


def stage_means(stages: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """{stage name: stats.mean} in stage order."""
    return {s["name"]: _finite((s.get("stats") or {}).get("mean")) for s in stages}


def chain_ratios(means: Mapping[str, float | None]) -> tuple[dict[str, float | None],
                                                             dict[str, str]]:
    """The named ratios of stage means and, for those that are None, why."""
    ratios: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    for name, (num, den) in RATIO_DEFS.items():
        if name == "scaled_prediction_to_truth" and "scaler_output" not in means:
            continue  # optional stage, optional ratio
        missing = [s for s in (num, den) if s not in means]
        if missing:
            ratios[name] = None
            notes[name] = f"stage(s) not recorded: {', '.join(missing)}"
            continue
        value, why = _quotient(means[num], means[den])
        ratios[name] = value
        if why:
            notes[name] = f"{why} ({num} / {den})"
    return ratios, notes


def _largest_drop(ratios: Mapping[str, float | None]) -> dict[str, Any] | None:
    best = None
    for name, r in ratios.items():
        d = _abs_log(r)
        if d is not None and (best is None or d > best[1]):
            best = (name, d)
    if best is None:
        return None
    return {"name": best[0], "value": ratios[best[0]],
            "abs_log10": None if math.isinf(best[1]) else best[1]}


def symmetry_check(stages: Sequence[Mapping[str, Any]], ratios: Mapping[str, float | None],
                   normalize_gain: float | None, tolerance: float = SYMMETRY_TOLERANCE
                   ) -> dict[str, Any]:
    """The symmetry check defined in the module docstring."""
    domains = {s["name"]: (s.get("metadata") or {}).get("domain") for s in stages}
    expected: dict[str, float] = {}
    unchecked: dict[str, str] = {}
    gain = _finite(normalize_gain)
    d_in, d_out = domains.get("grouped_diffraction"), domains.get("grouped_X_full")
    if gain is None or gain <= 0:
        unchecked["grouped_to_normalized"] = ("input-normalisation gain not recorded"
                                              if gain is None else f"gain {gain} is not positive")
    elif d_in and d_out and d_in != d_out:
        unchecked["grouped_to_normalized"] = (f"stages in different domains ({d_in} vs {d_out}); "
                                              "ratio of means is not the gain")
    else:
        expected["grouped_to_normalized"] = gain
    expected["normalized_to_container"] = 1.0
    expected["prediction_to_truth"] = 1.0

    actual: dict[str, float | None] = {}
    deviation: dict[str, float | None] = {}
    violations: list[str] = []
    worst: tuple[str, float] | None = None
    for name in list(expected):
        a = ratios.get(name)
        if a is None:
            unchecked[name] = "ratio not available"
            del expected[name]
            continue
        actual[name] = a
        q = a / expected[name]
        deviation[name] = q - 1.0
        if abs(q - 1.0) > tolerance:
            violations.append(name)
        d = _abs_log(q)
        if worst is None or d > worst[1]:
            worst = (name, d)
    return {
        "definition": "violated when |actual/expected - 1| > tolerance for any checked ratio; "
                      "expected grouped_to_normalized = recorded normalize_gain, "
                      "normalized_to_container = 1, prediction_to_truth = 1",
        "expected": expected,
        "actual": actual,
        "relative_deviation": deviation,
        "tolerance": tolerance,
        "violated": bool(violations),
        "violations": violations,
        "primary_deviation_ratio": None if worst is None else worst[0],
        "primary_deviation_source": None if worst is None else RATIO_DEFS[worst[0]][0],
        "unchecked": unchecked,
    }


def intensity_scale_block(dataset_derived: float | None, fallback: float | None,
                          used_mode: str | None, recorded_in_checkpoint: bool | None = None,
                          model_value: float | None = None) -> dict[str, Any]:
    """The ``intensity_scale`` block: which dose scale was used and what the model holds.

    ``used_mode``: "dataset" (also "dataset_derived") or "closed_form" (also "fallback").
    ``delta`` = model_value - used value; ``ratio`` = model_value / used value (None when either
    is missing).
    """
    mode = None if used_mode is None else str(used_mode)
    used = {"dataset": dataset_derived, "dataset_derived": dataset_derived,
            "closed_form": fallback, "fallback": fallback}.get(mode or "")
    used, model = _finite(used), _finite(model_value)
    delta = None if used is None or model is None else model - used
    ratio = None if delta is None or used == 0 else model / used
    return {"dataset_derived": _finite(dataset_derived), "fallback": _finite(fallback),
            "used_mode": mode, "used_value": used,
            "recorded_in_checkpoint": recorded_in_checkpoint, "model_value": model,
            "delta": delta, "ratio": ratio}


def build_intensity_stats(stages: Sequence[Mapping[str, Any]], *,
                          normalize_gain: float | None = None,
                          intensity_scale: Mapping[str, Any] | None = None,
                          training_labels: Mapping[str, Any] | None = None,
                          label_vs_truth_analysis: Mapping[str, Any] | None = None,
                          tolerance: float = SYMMETRY_TOLERANCE) -> dict[str, Any]:
    """The content of intensity_stats.json from recorded stages (see the module docstring)."""
    names = [s["name"] for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate stage names in {names}")
    means = stage_means(stages)
    ratios, notes = chain_ratios(means)
    chain = [ratios.get(r) for r in CHAIN_RATIOS]
    product = math.prod(chain) if all(r is not None for r in chain) else None
    gain = _finite(normalize_gain)
    return {
        "schema_version": SCHEMA_VERSION,
        "stages": [dict(s) for s in stages],
        "missing_stages": [s for s in REQUIRED_STAGES if s not in means],
        "stage_means": means,
        "ratios": ratios,
        "ratio_definitions": {k: f"mean({n}) / mean({d})" for k, (n, d) in RATIO_DEFS.items()
                              if k in ratios},
        "ratio_notes": notes,
        "largest_drop": _largest_drop(ratios),
        "normalize_gain": gain,
        "full_chain_product": product,
        "full_chain": {
            "ratios": list(CHAIN_RATIOS),
            "product": product,
            "product_over_normalize_gain": (None if product is None or not gain
                                            else product / gain),
            "note": "mean(container_X) / mean(raw_diffraction); over the gain it should be ~1",
        },
        "symmetry_check": symmetry_check(stages, ratios, gain, tolerance),
        "intensity_scale": None if intensity_scale is None else dict(intensity_scale),
        "training_labels": None if training_labels is None else dict(training_labels),
        "label_vs_truth_analysis": (None if label_vs_truth_analysis is None
                                    else dict(label_vs_truth_analysis)),
    }


# --------------------------------------------------------------------------------------------
# Training labels
# --------------------------------------------------------------------------------------------
def record_training_label_stats(container_arrays: Mapping[str, np.ndarray | None],
                                missing_reasons: Mapping[str, str] | None = None,
                                notes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``training_labels`` block: array_stats + note for X, Y_amp, Y_I, Y_phi, Y.

    ``container_arrays``: NumPy arrays as the training container holds them (None or absent for
    a label it does not carry). ``missing_reasons``: why a label is absent (a default reason is
    used otherwise). ``notes`` override ``LABEL_NOTES``. Extra keys are recorded too. The arrays
    are only read.
    """
    notes = {**LABEL_NOTES, **(notes or {})}
    reasons = dict(missing_reasons or {})
    block: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for key in (*LABEL_KEYS, *(k for k in container_arrays if k not in LABEL_KEYS)):
        arr = container_arrays.get(key)
        if arr is None:
            if key in LABEL_KEYS:
                missing[key] = reasons.get(key, "not carried by the training container")
            continue
        block[key] = array_stats(arr, note=notes.get(key, "no description given"))
    block["missing"] = missing
    return block


def _label_mean(stats: Mapping[str, Any], key: str) -> float | None:
    entry = stats.get(key)
    return _finite(entry.get("mean")) if isinstance(entry, Mapping) else None


def label_vs_truth(training_labels_stats: Mapping[str, Any], ground_truth_amp_mean: float | None,
                   tolerance: float = LABEL_TOLERANCE) -> dict[str, Any]:
    """Compare the amplitude labels with the ground truth over the same region.

    The verdict uses ``Y_amp`` (or ``sqrt(mean(Y_I))`` when Y_amp is absent; sqrt of a mean is
    >= the mean of sqrt, so that fallback reads slightly high): "consistent" when
    ``|Y_amp_mean / truth - 1| <= tolerance``, otherwise "inconsistent: ...".
    ``amplitude_gap_pct`` = 100 * (Y_amp_mean / truth - 1). ``X`` is diffraction, not object
    amplitude: its ratio is reported for reference only.
    """
    x_mean = _label_mean(training_labels_stats, "X")
    y_amp = _label_mean(training_labels_stats, "Y_amp")
    y_i = _label_mean(training_labels_stats, "Y_I")
    sqrt_y_i = math.sqrt(y_i) if y_i is not None and y_i >= 0 else None
    truth = _finite(ground_truth_amp_mean)

    def ratio(den: float | None) -> float | None:
        return None if truth is None or not den else truth / den

    label, label_name = (y_amp, "Y_amp") if y_amp is not None else (sqrt_y_i, "sqrt(Y_I)")
    gap = None if label is None or not truth else 100.0 * (label / truth - 1.0)
    if gap is None:
        what = "ground-truth mean" if not truth else "amplitude label (Y_amp or Y_I)"
        verdict = f"undetermined: no {what} available"
    elif abs(gap) <= 100.0 * tolerance:
        verdict = "consistent"
    else:
        verdict = (f"inconsistent: {label_name} mean is {label / truth:.4g}x the ground truth "
                   f"(gap {gap:+.2f}%, tolerance {100 * tolerance:.1f}%)")
    note = ("labels and truth are taken over the same region; X is the normalised diffraction "
            "amplitude (dimensionless), so ratio_truth_to_X_mean is for reference only")
    if y_amp is None and sqrt_y_i is not None:
        note += "; Y_amp absent: the gap uses sqrt(mean(Y_I)), which reads high by Jensen"
    return {
        "X_mean": x_mean, "Y_amp_mean": y_amp, "Y_I_mean": y_i, "sqrt_Y_I_mean": sqrt_y_i,
        "ground_truth_amp_mean": truth,
        "ratio_truth_to_X_mean": ratio(x_mean),
        "ratio_truth_to_Y_amp_mean": ratio(y_amp),
        "ratio_truth_to_sqrt_Y_I": ratio(sqrt_y_i),
        "amplitude_gap_pct": gap,
        "tolerance": tolerance,
        "verdict": verdict,
        "note": note,
        "spec_reference": "physics.md §3",
    }


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(c if isinstance(c, str) else format_number(c) for c in cells) + " |"


def render_intensity_stats_md(d: Mapping[str, Any]) -> str:
    """A readable Markdown rendering of intensity_stats.json content."""
    out = ["# Intensity scale chain", "",
           "| stage | source | shape | mean | std | min | max | NaN | count |",
           "|---|---|---|---|---|---|---|---|---|"]
    for s in d.get("stages") or []:
        st, meta = s.get("stats") or {}, s.get("metadata") or {}
        shape = "x".join(str(v) for v in st.get("shape") or []) or "n/a"
        out.append(_row([s.get("name", "?"), s.get("source") or "n/a", shape, st.get("mean"),
                         st.get("std"), st.get("min"), st.get("max"), st.get("nan_count"),
                         meta.get("count")]))
    if d.get("missing_stages"):
        out += ["", f"Stages not recorded: {', '.join(d['missing_stages'])}."]
    sym = d.get("symmetry_check") or {}
    expected = sym.get("expected") or {}
    out += ["", "## Ratios of stage means", "", "| ratio | definition | value | expected | note |",
            "|---|---|---|---|---|"]
    for name, value in (d.get("ratios") or {}).items():
        out.append(_row([name, (d.get("ratio_definitions") or {}).get(name, ""), value,
                         expected.get(name), (d.get("ratio_notes") or {}).get(name, "")]))
    drop = d.get("largest_drop")
    if drop:
        out += ["", f"Largest change: {drop['name']} = {format_number(drop['value'])} "
                    f"(|log10| {format_number(drop.get('abs_log10'))})."]
    out += [f"Input-normalisation gain: {format_number(d.get('normalize_gain'))}; full-chain "
            f"product: {format_number(d.get('full_chain_product'))}."]
    out += ["", "## Symmetry check", "",
            f"Tolerance {format_number(sym.get('tolerance'))}; violated: "
            f"{format_number(sym.get('violated'))}"
            + (f" ({', '.join(sym['violations'])})" if sym.get("violations") else "")
            + f"; primary deviation source: {sym.get('primary_deviation_source') or 'n/a'}.",
            "", str(sym.get("definition", ""))]
    for name, why in (sym.get("unchecked") or {}).items():
        out.append(f"- {name} not checked: {why}")
    scale = d.get("intensity_scale")
    if scale:
        out += ["", "## Intensity (dose) scale", "", "| field | value |", "|---|---|"]
        out += [_row([k, v]) for k, v in scale.items()]
    lvt = d.get("label_vs_truth_analysis")
    if lvt:
        out += ["", "## Labels vs ground truth", "", "| field | value |", "|---|---|"]
        out += [_row([k, v]) for k, v in lvt.items() if k not in ("note", "verdict")]
        out += ["", f"Verdict: {lvt.get('verdict')}. {lvt.get('note', '')}"]
    return "\n".join(out) + "\n"
