"""The decision procedure of the analyzer, as data: one small rule per stage, evidence in, verdict
out, checked in the order an expert ptychographer checks a run (docs/telemetry.md, "How the
analyzer decides"):

1. the run itself (status, NaN in training, non-finite output);
2. the inputs, against the physics: with a ground truth, does ``|F(P x O_true)|^2`` at the run's
   positions explain the measured counts (aggregate deviance z <= 5)? If not: units/dose
   (measured vs nominal photons), probe scale (one scalar on the truth's photons fixes it),
   scan positions (swapped axes / per-pattern shifts fix it), a constant offset (one common
   shift fixes it: the same to the data as a shifted truth frame), else the probe itself;
   without a truth: photons vs nominal dose;
3. the labels (amplitude labels vs the truth);
4. the model: the network's output (flat, saturated), the final reconstruction's consistency
   against a flat object, its scale against the truth;
5. the evaluation: registration shift, train/test photons against what the physics predicts;
6. otherwise healthy.

The first rule that finds a fault gives the verdict; every rule's outcome is kept in the trace.
Thresholds (``LIMITS``) carry their reasons in docs/telemetry.md; margins are measured in
tests/test_faults.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..evaluate.consistency import ConsistencyRecord
from ..records.bias import RuleOutcome, Verdict

#: Decision limits (all dimensionless). Reasons: docs/telemetry.md, "How the analyzer decides".
LIMITS = {
    "truth_z": 5.0,               # aggregate deviance z of the truth: N(0, 1) when inputs are right
    "photons_rel": 0.05,          # measured (train) vs nominal photons per pattern
    "probe_scale_rel": 0.05,      # measured vs truth-predicted photons (one scalar)
    "hypothesis_excess_kept": 0.25,  # a hypothesis explains the fault if it keeps <= 25 % of the
                                     # truth's excess deviance (D/E - 1)
    "shift_spread_px": 0.75,      # per-pattern best shifts spread beyond this: random errors
    "label_gap_pct": 5.0,
    "flat_contrast_ratio": 0.01,  # network contrast / truth contrast below this: flat output
                                  # (healthy 2-epoch networks on the plateau: 0.049-0.27)
    "flat_contrast_abs": 1e-3,    # without a truth: std/mean of the network output below this
    "saturation_fraction": 0.05,  # of the output at the activation bound or tied at its maximum
    "explained_vs_flat_min": 0.0,  # final reconstruction no better than a flat object
    "scale_rel": 0.05,            # least-squares prediction scale vs 1
    "registration_shift_px": 2.0,
    "parity_vs_physics_pct": 2.0,  # measured test/train photon ratio vs the physics' prediction
}

STAGE_LABELS = {
    "run_status": "run status",
    "nan_in_training": "NaN in training",
    "dose_units": "photon units / dose normalisation",
    "probe_scale": "probe scale",
    "probe": "probe (wrong probe)",
    "scan_positions": "scan positions",
    "evaluation_frame": "evaluation frame",
    "labels": "labels vs truth",
    "model_output": "model output",
    "split_parity": "train/test parity",
    "healthy": "healthy",
}


@dataclass
class Evidence:
    """What the rules read, gathered from one run directory (see ``gather``)."""

    status: str | None = None
    failed_stage: str | None = None
    error: str | None = None          # "Type: message" of a failed run's recorded error
    consistency: ConsistencyRecord | None = None
    training_nan: bool | None = None
    label_gap_pct: float | None = None
    label_terms_active: bool | None = None
    pearson_amp: float | None = None
    ls_scale: float | None = None
    mean_ratio_scale: float | None = None          # mean truth / mean prediction (fallback)
    fraction_at_bound_final: float | None = None   # comparison's output range check
    shift_px: list[float] | None = None
    shift_refused: bool = False
    recorded_parity_pct: float | None = None       # recorded train/test scale deviation
    recorded_predicted_ratio: float | None = None  # test/train unit-dose intensity (simulated)
    recorded_measured_ratio: float | None = None   # test/train measured photons
    nominal_photons: float | None = None
    measured_train_photons: float | None = None
    has_truth: bool = True                         # False: own data without a ground truth
    notes: list[str] = field(default_factory=list)


Result = tuple[str, str, dict[str, Any], str] | None   # (stage, reason, evidence, next check)
#: A rule's result when it cannot be assessed (it needs a ground truth the run does not have).
NOT_ASSESSED = "not_assessed"
NO_TRUTH = "not assessed: no ground truth in the data"
Rule = tuple[str, str, Callable[[Evidence], tuple[str, Result]]]


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _g(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _kept(best: float | None, recorded: float | None) -> float | None:
    """Fraction of the recorded excess deviance (D/E - 1) a hypothesis leaves."""
    if best is None or recorded is None or recorded <= 1.0:
        return None
    return max(best - 1.0, 0.0) / (recorded - 1.0)


# --------------------------------------------------------------------------------------------
# The rules: each returns (what it checked, None) when it passes, (..., fault) when it fires.
# --------------------------------------------------------------------------------------------
def rule_run_status(e: Evidence):
    if e.status not in (None, "ok"):
        err = f": {e.error}" if e.error else ""
        return "run status", ("run_status", f"the run did not finish (status {e.status!r}, failed "
                              f"in stage {e.failed_stage!r}{err})", {"status": e.status,
                              "failed_stage": e.failed_stage, "error": e.error},
                              f"the error in run_metadata.json and logs/run.log of stage "
                              f"{e.failed_stage!r}")
    return f"status {e.status or 'n/a'}", None


def rule_nan(e: Evidence):
    mo = e.consistency.model_output if e.consistency else None
    bad = mo.non_finite_fraction if mo else None
    if e.training_nan or (bad is not None and bad > 0):
        return "NaN", ("nan_in_training", "training produced NaN" if e.training_nan else
                       f"{100 * bad:.3g}% of the network's output is not finite",
                       {"training_nan": e.training_nan, "non_finite_output_fraction": bad},
                       "the first NaN step in train_outputs/history_summary.json: inputs with "
                       "NaN/Inf, the learning rate, the loss normaliser")
    return f"no NaN in training (flag {e.training_nan}), output non-finite fraction {_g(bad)}", None


def _truth_inconsistent(c: ConsistencyRecord) -> bool:
    z = c.truth.z_aggregate if c.truth else None
    return z is None or z > LIMITS["truth_z"]


def rule_inputs(e: Evidence):
    """Inputs against the physics: the truth at the run's probe, positions and units."""
    c = e.consistency
    if c is None:
        return "no consistency record: inputs not checked against the data", None
    ph = c.photons
    m_nom = (None if ph.measured_train is None or not ph.nominal
             else ph.measured_train / ph.nominal)
    if c.truth is None:
        return _inputs_without_truth(e, c, m_nom)
    t = c.truth
    ev = {"truth_normalised_deviance": t.normalised_aggregate, "truth_z": t.z_aggregate,
          "measured_over_nominal_photons": m_nom,
          "measured_over_truth_predicted_photons": ph.measured_over_predicted}
    if not _truth_inconsistent(c):
        return (f"the truth explains the counts (normalised deviance {_g(t.normalised_aggregate)}, "
                f"z {_g(t.z_aggregate)})"), None
    head = (f"the truth with the run's probe and positions does not explain the counts "
            f"(normalised deviance {_g(t.normalised_aggregate)}, z {_g(t.z_aggregate)})")
    c_fit = ph.measured_over_predicted
    if m_nom is not None and abs(m_nom - 1) > LIMITS["photons_rel"]:
        return head, ("dose_units", f"{head}; measured photons per pattern are {_g(m_nom)} x the "
                      f"nominal dose ({_g(ph.measured_train)} vs {_g(ph.nominal)})", ev,
                      "the units of the measured data (counts vs amplitude, detector gain, "
                      "binning) and the nominal dose (nphotons) in the file's metadata")
    kept = _kept(ph.truth_scaled_normalised_median, t.normalised_median)
    if (c_fit is not None and abs(c_fit - 1) > LIMITS["probe_scale_rel"]
            and kept is not None and kept <= LIMITS["hypothesis_excess_kept"]):
        ev |= {"probe_amplitude_factor": 1 / math.sqrt(c_fit), "excess_kept_after_scale": kept}
        return head, ("probe_scale", f"{head}; the photons match the nominal dose but the probe "
                      f"predicts {_g(1 / c_fit)} x the measured photons (probe amplitude "
                      f"{_g(1 / math.sqrt(c_fit))} x too strong)", ev,
                      "the probe's normalisation: its energy sum|P|^2 "
                      f"({_g(ph.probe_energy_photons)} photons) against the measured photons")
    pos = c.positions
    if pos is not None:
        rec = pos.normalised_median_as_recorded
        ev |= {"swapped_xy": pos.normalised_median_swapped_xy,
               "common_shift_px": pos.common_shift_px,
               "best_common_shift": pos.normalised_median_best_common_shift,
               "best_per_pattern_shift": pos.normalised_median_best_per_pattern_shift,
               "shift_spread_px": pos.per_pattern_shift_spread_px}
        lim = LIMITS["hypothesis_excess_kept"]
        k_swap = _kept(pos.normalised_median_swapped_xy, rec)
        k_common = _kept(pos.normalised_median_best_common_shift, rec)
        k_each = _kept(pos.normalised_median_best_per_pattern_shift, rec)
        if k_swap is not None and k_swap <= lim:
            return head, ("scan_positions", f"{head}; with x and y swapped it does "
                          f"(normalised deviance {_g(rec)} -> {_g(pos.normalised_median_swapped_xy)})",
                          ev, "the order of the position columns (x = column, y = row) in the file")
        if (k_common is not None and k_common <= lim and pos.common_shift_px
                and any(pos.common_shift_px)
                and (pos.per_pattern_shift_spread_px or 0) <= LIMITS["shift_spread_px"]):
            dy, dx = pos.common_shift_px
            return head, ("evaluation_frame", f"{head}; shifted by a common (dy, dx) = ({dy:g}, "
                          f"{dx:g}) px it does (normalised deviance {_g(rec)} -> "
                          f"{_g(pos.normalised_median_best_common_shift)}): a constant offset "
                          "between the scan positions and the truth's frame", ev,
                          "the scan origin in the positions against the frame of the ground truth "
                          "(a constant scan offset and a shifted truth frame are the same to the "
                          "data)")
        if (k_each is not None and k_each <= lim
                and (pos.per_pattern_shift_spread_px or 0) > LIMITS["shift_spread_px"]):
            return head, ("scan_positions", f"{head}; a shift per pattern (spread "
                          f"{_g(pos.per_pattern_shift_spread_px)} px) does (normalised deviance "
                          f"{_g(rec)} -> {_g(pos.normalised_median_best_per_pattern_shift)}): "
                          "random position errors", ev,
                          "the encoder/stage positions and their units (pixels vs metres)")
    return head, ("probe", f"{head}; the probe's energy matches the photons (measured / predicted "
                  f"{_g(c_fit)}) and no position hypothesis helps: the probe is wrong", ev,
                  "that the probe belongs to this data set (its shape, defocus, pixel size)")


def _inputs_without_truth(e: Evidence, c: ConsistencyRecord, m_nom: float | None):
    """Without a truth only the photons can be checked against the metadata; the probe energy
    against the photons is reported (mean |O|^2 the data imply) but decides nothing: the object's
    amplitude units are the data set's own (the sim-lines object has |O|^2 ~ 40)."""
    ph = c.photons
    ev = {"measured_over_nominal_photons": m_nom,
          "measured_over_probe_energy": ph.measured_over_probe_energy}
    if m_nom is not None and abs(m_nom - 1) > LIMITS["photons_rel"]:
        return "no truth", ("dose_units", f"measured photons per pattern are {_g(m_nom)} x the "
                            "nominal dose", ev, "the units of the measured data and the nominal "
                            "dose in the file's metadata")
    return (f"no truth; photons {_g(m_nom)} x nominal; the data imply a mean |O|^2 of "
            f"{_g(ph.measured_over_probe_energy)} under the probe"), None


def rule_labels(e: Evidence):
    if not e.has_truth:
        return f"labels vs truth {NO_TRUTH}", NOT_ASSESSED
    g = e.label_gap_pct
    if g is not None and abs(g) > LIMITS["label_gap_pct"]:
        used = ("used by the loss" if e.label_terms_active else
                "not used by the loss (realspace weight 0): the reconstruction is unaffected")
        return f"label gap {_g(g)}%", ("labels", f"amplitude labels differ from the truth by "
                                       f"{g:+.3g}% ({used})", {"label_gap_pct": g,
                                       "label_terms_active": e.label_terms_active},
                                       "how the labels are cut from the truth (scale, "
                                       "amplitude vs intensity)")
    return f"label gap {_g(g)}%", None


def rule_model(e: Evidence):
    c = e.consistency
    mo = c.model_output if c else None
    ev: dict[str, Any] = {}
    if mo is not None:
        ratio = (mo.amplitude_contrast / mo.truth_contrast
                 if mo.amplitude_contrast is not None and mo.truth_contrast else None)
        ev |= {"network_contrast": mo.amplitude_contrast, "truth_contrast": mo.truth_contrast,
               "contrast_ratio": ratio, "fraction_at_bound": mo.fraction_at_bound}
        flat = (ratio is not None and ratio < LIMITS["flat_contrast_ratio"]) or (
            ratio is None and mo.amplitude_contrast is not None
            and mo.amplitude_contrast < LIMITS["flat_contrast_abs"])
        ev["fraction_at_max"] = mo.fraction_at_max
        sat = max(mo.fraction_at_bound or 0.0, mo.fraction_at_max or 0.0)
        if flat or sat > LIMITS["saturation_fraction"]:
            tied = (f"{100 * sat:.3g}% of its pixels at the activation bound or tied at its "
                    "maximum")
            what = (f"flat and saturated ({tied})" if flat and sat > LIMITS["saturation_fraction"]
                    else "flat" if flat else f"saturated ({tied})")
            return "network output", ("model_output", f"the network's output is {what}: "
                                      f"contrast {_g(mo.amplitude_contrast)} against the truth's "
                                      f"{_g(mo.truth_contrast)}", ev,
                                      "the network's activations and its training history "
                                      "(learning rate, loss weights, epochs)")
    at_bound = e.fraction_at_bound_final if mo is None else None
    if at_bound is not None and at_bound > LIMITS["saturation_fraction"]:
        return "output range", ("model_output", f"{100 * at_bound:.3g}% of the reconstruction's "
                                "pixels sit at the amplitude activation bound (saturated)",
                                {"fraction_at_bound": at_bound}, "the network's amplitude "
                                "activation and its training history")
    fin = c.final if c else None
    expl = fin.explained_vs_flat if fin else None
    ev |= {"final_explained_vs_flat": expl,
           "final_normalised_deviance": fin.normalised_aggregate if fin else None}
    if expl is not None and expl < LIMITS["explained_vs_flat_min"]:
        return "final reconstruction", ("model_output", "the inputs explain the data but the final "
                                        f"reconstruction does not (deviance explained vs a flat "
                                        f"object {_g(expl)})", ev,
                                        "the network's training (epochs, loss) and the refinement "
                                        "steps")
    scale = e.ls_scale if e.ls_scale is not None else e.mean_ratio_scale
    if scale is not None and scale > 0 and abs(scale - 1) > LIMITS["scale_rel"]:
        ev["truth_over_prediction_scale"] = scale
        return "scale", ("model_output", f"the reconstruction is at {_g(1 / scale)} x the "
                         "truth's amplitude although the inputs are consistent", ev,
                         "the model's amplitude scale (dose scale in the checkpoint, "
                         "prediction scale applied in evaluation)")
    if not e.has_truth:   # contrast and deviance checked on their own; no truth to scale to
        return (f"network contrast (std/mean) {_g(ev.get('network_contrast'))}, final explains "
                f"{_g(expl)} vs flat; scale against the truth {NO_TRUTH}"), None
    return (f"network contrast {_g(ev.get('contrast_ratio'))} of the truth's, final explains "
            f"{_g(expl)} vs flat, scale {_g(scale)}"), None


def rule_frame(e: Evidence):
    if not e.has_truth:
        return f"evaluation frame (registration to the truth) {NO_TRUTH}", NOT_ASSESSED
    if e.shift_px is None or e.shift_refused:
        return "no registration shift" if e.shift_px is None else "shift refused", None
    mag = math.hypot(*e.shift_px)
    if mag > LIMITS["registration_shift_px"]:
        return f"shift {_g(mag)} px", ("evaluation_frame", f"the reconstruction matches the truth "
                                       f"after a shift of {mag:.3g} px (dy, dx = {e.shift_px})",
                                       {"shift_px": e.shift_px}, "the frame of the ground truth "
                                       "and the scan origin used in evaluation")
    return f"registration shift {_g(mag)} px", None


def rule_parity(e: Evidence):
    c = e.consistency
    ph = c.photons if c else None
    dev = ph.parity_deviation_from_predicted_pct if ph else None
    meas = ph.test_over_train_measured if ph else e.recorded_measured_ratio
    pred = ph.test_over_train_predicted if ph else e.recorded_predicted_ratio
    if dev is None and meas and pred:
        dev = 100.0 * (meas / pred - 1.0)
    if dev is None:
        return "train/test parity not assessed (no physics prediction)", None
    ev = {"test_over_train_measured": meas, "test_over_train_predicted": pred,
          "deviation_from_physics_pct": dev, "recorded_scale_deviation_pct": e.recorded_parity_pct}
    if abs(dev) > LIMITS["parity_vs_physics_pct"]:
        return "parity", ("split_parity", f"test/train photons {_g(meas)} measured against "
                          f"{_g(pred)} predicted by the physics ({dev:+.3g}%)", ev,
                          "how the splits were made and whether both share the same dose")
    return (f"test/train photons {_g(meas)} measured, {_g(pred)} predicted by the physics "
            f"({dev:+.2g}%): the recorded deviation is the object's physics, as expected"), None


RULES: tuple[tuple[str, Callable], ...] = (
    ("run_status", rule_run_status),
    ("nan_in_training", rule_nan),
    ("inputs", rule_inputs),
    ("labels", rule_labels),
    ("model_output", rule_model),
    ("evaluation_frame", rule_frame),
    ("split_parity", rule_parity),
)


def decide(e: Evidence) -> Verdict:
    """Apply RULES in order; the first fault is the verdict, else healthy."""
    trace: list[RuleOutcome] = []
    for name, rule in RULES:
        checked, fault = rule(e)
        if fault is None or fault == NOT_ASSESSED:
            trace.append(RuleOutcome(rule=name, outcome="pass" if fault is None else NOT_ASSESSED,
                                     detail=checked))
            continue
        stage, reason, evidence, next_check = fault
        trace.append(RuleOutcome(rule=name, outcome="fault", detail=reason))
        return Verdict(healthy=False, stage=stage, label=STAGE_LABELS[stage], reason=reason,
                       evidence=_clean(evidence), next_check=next_check, trace=trace,
                       notes=list(e.notes))
    parity = next((t.detail for t in trace if t.rule == "split_parity"), "")
    skipped = [STAGE_LABELS.get(t.rule, t.rule) for t in trace if t.outcome == NOT_ASSESSED]
    head = ("every check passed" if not skipped else "every check that needs no ground truth "
            f"passed ({', '.join(skipped)} not assessed: no ground truth)")
    fin = e.consistency.final if e.consistency else None
    if not e.has_truth and fin is not None and fin.normalised_median is not None:
        # Without a truth the final deviance is the only test of the inputs, and it cannot
        # separate model error from an input fault: say how far from shot noise it is.
        head += (f"; the reconstruction leaves normalised deviance {_g(fin.normalised_median)} "
                 "(median; 1 = shot noise): above about 2, model error and an input fault "
                 "(probe, positions) cannot be told apart without a ground truth")
    return Verdict(healthy=True, stage="healthy", label="healthy",
                   reason=head + (f"; {parity}" if parity else ""),
                   evidence={}, next_check=None, trace=trace, notes=list(e.notes))


def _clean(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out
