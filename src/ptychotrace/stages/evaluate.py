"""The one evaluation stage: a reconstruction against the ground truth -> ComparisonRecord.

``run``, ``infer``, ``baseline`` and ``sweep`` all call :func:`evaluate` (the PINN through
:func:`evaluate_prediction`), so identical inputs give identical comparison_metrics.json.
The recipe itself (registration, scale, phase offset, metrics on covered & illuminated) is
:func:`ptychotrace.evaluate.metrics.evaluate_reconstruction`.
"""

from __future__ import annotations

import numpy as np

from ..config import EvaluationConfig
from ..records.comparison import ComparisonRecord


def evaluate(pred_complex: np.ndarray, truth: np.ndarray, covered: np.ndarray,
             illuminated: np.ndarray | None = None, *, evaluation: EvaluationConfig | None = None,
             recorded_scale: float | None = 1.0, activation_bound: float | None = None,
             mask_source: str | None = None) -> ComparisonRecord:
    """Compare (H, W) complex ``pred_complex`` with the complex ``truth`` on ``covered`` (bool)
    & ``illuminated`` (bool or None: ``covered`` is the whole region).

    recorded_scale: the amplitude scale used in mode "recorded" (1: the object is in object
    units under the counts contract and for the baseline's known physical probe).
    """
    from ..evaluate.metrics import evaluate_reconstruction

    raw = evaluate_reconstruction(pred_complex, truth, covered, illuminated,
                                  evaluation=evaluation or EvaluationConfig(),
                                  recorded_scale=recorded_scale, activation_bound=activation_bound)
    record = ComparisonRecord.model_validate(raw)
    if mask_source is not None and record.evaluation_region is not None:
        record.evaluation_region.mask_source = mask_source
    return record


def prediction_region(probe: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray,
                      shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixels the probe reaches over the scan (physics.stitching rule)."""
    import torch

    from ..physics.stitching import illuminated_in_object_frame

    return illuminated_in_object_frame(
        torch.from_numpy(np.asarray(probe)),
        torch.from_numpy(np.asarray(xcoords, dtype=np.float64)),
        torch.from_numpy(np.asarray(ycoords, dtype=np.float64)), tuple(shape)).numpy()


def activation_bound(model) -> float | None:
    bound = getattr(model.net, "amplitude_bound", None)
    return None if bound is None else float(bound)


def recorded_scale_of(model) -> tuple[float, str]:
    """The amplitude scale the model itself records: 1 under the counts contract (the physics fixes
    the object's units); the legacy contract's outputs are in object units too."""
    return 1.0, f"checkpoint contract '{model.contract.value}': output in object units"


def evaluate_prediction(model, pred, ds, evaluation: EvaluationConfig | None = None
                        ) -> tuple[ComparisonRecord, np.ndarray]:
    """The PINN's evaluation (``run`` and ``infer``): stitched ``pred`` (infer.predict.Prediction)
    against ``ds.obj`` on its coverage & illuminated. Returns (record, evaluated region)."""
    if ds.obj is None:
        raise ValueError("the dataset has no ground truth (objectGuess) to compare with")
    illuminated = prediction_region(ds.probe, pred.xcoords, pred.ycoords, ds.obj.shape)
    pred_complex = (pred.amplitude * np.exp(1j * pred.phase)).astype(np.complex64)
    scale, _ = recorded_scale_of(model)
    record = evaluate(pred_complex, ds.obj, pred.covered, illuminated, evaluation=evaluation,
                      recorded_scale=scale, activation_bound=activation_bound(model))
    return record, pred.covered & illuminated
