"""The PINN's evaluation and outputs, shared by ``run`` and ``infer``: evaluate the stitched
prediction (:func:`.evaluate.evaluate_prediction`), then write comparison_metrics.json, the
prediction's arrays and images, the truth comparison, prediction_scale.json and stats.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import EvaluationConfig
from ..records.comparison import COMPARISON_FILE, ComparisonRecord, NetworkOnly
from ..telemetry.writers import write_json, write_npy
from .evaluate import evaluate_prediction
from .reconstruction import (
    AMP_UNIT,
    object_pixel_size_m,
    save_image,
    simple_stats,
    write_object,
    write_truth_comparison,
)


@dataclass
class _Stitched:
    """Another stitched object on the same scan as a Prediction (positions, coverage)."""

    amplitude: np.ndarray
    phase: np.ndarray
    like: object

    def __getattr__(self, name):
        return getattr(self.like, name)


@dataclass
class PredictionOutputs:
    comparison: ComparisonRecord
    region: np.ndarray                  # (H, W) bool evaluated region (covered & illuminated)
    amplitude_unscaled: np.ndarray      # (H, W) float32, 0 outside covered
    amplitude_scaled: np.ndarray        # (H, W) float32, times the applied prediction scale
    stats: dict
    artifacts: list[str] = field(default_factory=list)   # relative to the run directory


def evaluate_and_write(model, pred, ds, evaluation: EvaluationConfig, run_dir: Path,
                       inference_dir: Path) -> PredictionOutputs:
    """Evaluate ``pred`` (infer.predict.Prediction) against ``ds.obj`` and write everything.

    run_dir gets comparison_metrics.json and the truth images; inference_dir (run_dir itself for
    ``infer``) the prediction's arrays, PNGs, coverage_weight.npy, evaluation_region.npy,
    prediction_scale.json and stats.json."""
    run_dir, inf = Path(run_dir), Path(inference_dir)
    cmp, region = evaluate_prediction(model, pred, ds, evaluation)
    net = getattr(pred, "network_only", None)
    if net is not None:   # the network alone (before refinement), same recipe and region
        net_cmp, _ = evaluate_prediction(model, _Stitched(net["amplitude"], net["phase"], pred),
                                         ds, evaluation)
        cmp.network_only = NetworkOnly(amplitude=net_cmp.amplitude, phase=net_cmp.phase,
                                       prediction_scale=net_cmp.prediction_scale)
    cmp.write(run_dir / COMPARISON_FILE)
    rel = "" if inf.resolve() == run_dir.resolve() else f"{inf.relative_to(run_dir)}/"
    truth = ds.obj
    factor = cmp.prediction_scale.factor
    cov = pred.covered
    amp_unscaled = np.where(cov, pred.amplitude, 0).astype(np.float32)
    amp_scaled = amp_unscaled * np.float32(factor)
    vmax = evaluation.amp_vmax or float(np.abs(truth).max())
    px_m = object_pixel_size_m(ds)   # scale bars where the geometry is known (issue #13)
    inf_names = write_object(inf, amp_scaled, pred.phase, cov,
                             f"predicted (x{factor:.4g})", amp_limits=(0.0, vmax), pixel_size_m=px_m)
    inf_names += save_image(inf, "amplitude_unscaled", amp_unscaled,
                            "predicted amplitude (unscaled)", "amplitude", AMP_UNIT, mask=cov,
                            limits=(0.0, vmax), pixel_size_m=px_m)
    write_npy(inf / "coverage_weight.npy", pred.weight.astype(np.float32))
    write_npy(inf / "evaluation_region.npy", region.astype(np.float32))
    inf_names += ["coverage_weight.npy", "evaluation_region.npy"]
    scale = cmp.prediction_scale.dump()
    write_json(inf / "prediction_scale.json", scale)
    stats = {
        "amplitude": simple_stats(amp_scaled[cov]), "phase": simple_stats(pred.phase[cov]),
        "offsets": {"axis_max_abs": pred.offsets_axis_max_abs, "max_abs": pred.offsets_max_abs,
                    "units": "pixels from group centre"},
        "canvas": {"padded_size": list(pred.padded_shape), "required_canvas": list(truth.shape),
                   "fits_canvas": bool(pred.fits_canvas), "frame": "object frame (positions in "
                   "object pixels, no recentring)"},
        "coverage_fraction": float(cov.mean()), "prediction_scale": scale,
        "prediction": pred.stats(),
        "comparison": cmp.headline(coverage_fraction=float(cov.mean())).dump(),
    }
    write_json(inf / "stats.json", stats)
    inf_names += ["stats.json", "prediction_scale.json"]
    names = write_truth_comparison(run_dir, amp_scaled, pred.phase, truth, cov, cmp, "prediction",
                                   amp_vmax=vmax, pixel_size_m=px_m)
    arts = [f"{rel}{n}" for n in inf_names] + names + [COMPARISON_FILE]
    return PredictionOutputs(cmp, region, amp_unscaled, amp_scaled, stats, arts)
