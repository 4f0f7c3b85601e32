"""Write a reconstruction: arrays (.npy, float32), PNGs (the one image writer,
:func:`ptychotrace.report.figures.image_png`) and the truth comparison figures.

Used by ``run`` (inference_outputs/ and the run directory), ``infer``, ``baseline`` and each sweep
point's baseline, so every image follows one rule: pixels without a value (uncovered,
unilluminated) are masked and drawn in the "bad" colour, never as 0; phase ranges are symmetric
and fitted to the data; truth, prediction and difference share scales. The .npy files keep 0
outside the covered region (their documented contract) and ``coverage`` says where values are.
Where the dataset's geometry gives the real-space pixel size (:func:`object_pixel_size_m`), object
images carry a scale bar (issue #13); simulations in object pixels get none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..records.comparison import ComparisonRecord
from ..telemetry.writers import write_bytes, write_npy

AMP_UNIT = "object amplitude"
PHASE_UNIT = "rad"


def object_pixel_size_m(ds) -> float | None:
    """The object pixel width in metres from the dataset's geometry (``metadata.geometry``,
    written by ptychotrace.io at load), None when unknown (simulations, files without geometry)."""
    geom = (getattr(ds, "metadata", None) or {}).get("geometry")
    if not geom:
        return None
    from ..records.run_metadata import GeometryBlock

    return GeometryBlock.model_validate(geom).object_pixel_width_m


def save_image(out_dir: Path, stem: str, image: np.ndarray, title: str, kind: str, unit: str, *,
               mask: np.ndarray | None = None, limits: tuple[float, float] | None = None,
               npy: bool = True, pixel_size_m: float | None = None) -> list[str]:
    """``stem.npy`` (float32, as given) and ``stem.png`` (``mask`` False drawn as no value;
    a scale bar when ``pixel_size_m``, metres, is known). Returns the written names relative
    to ``out_dir``."""
    from ..report.figures import image_png

    out_dir = Path(out_dir)
    names = []
    if npy:
        write_npy(out_dir / f"{stem}.npy", np.asarray(image, dtype=np.float32))
        names.append(f"{stem}.npy")
    png = image_png(image, title, kind, unit, limits=limits, mask=mask, pixel_size_m=pixel_size_m)
    if png is not None:
        write_bytes(out_dir / f"{stem}.png", png)
        names.append(f"{stem}.png")
    return names


def write_object(out_dir: Path, amplitude: np.ndarray, phase: np.ndarray, covered: np.ndarray,
                 label: str, *, amp_limits: tuple[float, float] | None = None,
                 amplitude_stem: str = "amplitude", phase_stem: str = "phase",
                 pixel_size_m: float | None = None) -> list[str]:
    """amplitude / phase of a reconstruction: .npy with 0 outside ``covered``, masked PNGs
    (with a scale bar when ``pixel_size_m``, the object pixel in metres, is known)."""
    cov = np.asarray(covered, dtype=bool)
    amp = np.where(cov, amplitude, 0).astype(np.float32)
    ph = np.where(cov, phase, 0).astype(np.float32)
    names = save_image(out_dir, amplitude_stem, amp, f"{label} amplitude", "amplitude", AMP_UNIT,
                       mask=cov, limits=amp_limits, pixel_size_m=pixel_size_m)
    names += save_image(out_dir, phase_stem, ph, f"{label} phase", "phase", PHASE_UNIT, mask=cov,
                        pixel_size_m=pixel_size_m)
    return names


def truth_differences(amplitude: np.ndarray, phase: np.ndarray, truth: np.ndarray,
                      covered: np.ndarray, comparison: ComparisonRecord
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(amplitude - |truth|, wrap(phase - offset - angle(truth))) on ``covered``, 0 elsewhere;
    ``amplitude`` as shown (scaled), ``offset`` the comparison's removed global phase."""
    from ..evaluate.align import wrap_phase

    cov = np.asarray(covered, dtype=bool)
    offset = float(comparison.phase_offset_removed_rad or 0.0)
    amp_diff = np.where(cov, amplitude - np.abs(truth), 0).astype(np.float32)
    phase_diff = np.where(cov, wrap_phase(phase - offset - np.angle(truth)), 0).astype(np.float32)
    return amp_diff, phase_diff


def write_truth_comparison(out_dir: Path, amplitude: np.ndarray, phase: np.ndarray,
                           truth: np.ndarray, covered: np.ndarray, comparison: ComparisonRecord,
                           label: str, *, amp_vmax: float | None = None,
                           pixel_size_m: float | None = None) -> list[str]:
    """ground_truth_amp / ground_truth_phase, amplitude_diff / phase_diff (.npy + .png), and two
    figures: comparison.png (truth | prediction | difference per channel, shared scales) and
    frc.png (the FRC curves with the 1/2-bit threshold)."""
    from ..report.figures import comparison_png, frc_png

    out_dir = Path(out_dir)
    cov = np.asarray(covered, dtype=bool)
    amp_t, ph_t = np.abs(truth), np.angle(truth)
    vmax = amp_vmax or float(amp_t.max())
    amp_diff, phase_diff = truth_differences(amplitude, phase, truth, cov, comparison)
    names = save_image(out_dir, "ground_truth_amp", amp_t, "ground truth amplitude", "amplitude",
                       AMP_UNIT, limits=(0.0, vmax), pixel_size_m=pixel_size_m)
    names += save_image(out_dir, "ground_truth_phase", ph_t, "ground truth phase", "phase",
                        PHASE_UNIT, pixel_size_m=pixel_size_m)
    names += save_image(out_dir, "amplitude_diff", amp_diff, f"amplitude: {label} - truth",
                        "difference", AMP_UNIT, mask=cov)
    names += save_image(out_dir, "phase_diff", phase_diff, f"phase: {label} - truth (wrapped, "
                        "offset removed)", "difference", PHASE_UNIT, mask=cov)
    offset = float(comparison.phase_offset_removed_rad or 0.0)
    shown_phase = np.where(cov, np.angle(np.exp(1j * (phase - offset))), np.nan)
    png = comparison_png([("amplitude", amp_t, amplitude, amp_diff, AMP_UNIT),
                          ("phase", ph_t, shown_phase, phase_diff, PHASE_UNIT)], mask=cov,
                         title=f"{label} vs ground truth (evaluated region; grey: no value)",
                         pixel_size_m=pixel_size_m)
    if png is not None:
        write_bytes(out_dir / "comparison.png", png)
        names.append("comparison.png")
    frc = frc_png({ch: (getattr(comparison, ch).frc.dump() if getattr(comparison, ch).frc
                        else None) for ch in ("amplitude", "phase")})
    if frc is not None:
        write_bytes(out_dir / "frc.png", frc)
        names.append("frc.png")
    return names


def simple_stats(a: np.ndarray) -> dict:
    """min, max, mean, std of the finite values and the NaN count (float64 reductions)."""
    a = np.asarray(a, dtype=np.float64)
    fin = a[np.isfinite(a)]
    if fin.size == 0:
        return {"min": None, "max": None, "mean": None, "std": None,
                "nan_count": int(np.isnan(a).sum())}
    return {"min": float(fin.min()), "max": float(fin.max()), "mean": float(fin.mean()),
            "std": float(fin.std()), "nan_count": int(np.isnan(a).sum())}
