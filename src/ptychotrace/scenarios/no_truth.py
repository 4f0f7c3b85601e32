"""The compare stage of a run on data without a ground truth (``run --data FILE``, own data).

There is nothing to compare against, and the comparison block says so. Instead the run records
and summarises what can be known without a truth: the reconstruction (coverage, amplitude and
phase statistics, field of view in metres where the geometry is known), the probe (photons, scale
stage), the scan (extent, step) and the data-consistency numbers (how well the reconstruction
explains the measured counts; ``consistency`` block written by ``evaluate/consistency`` when that
module is present). With a physical geometry the reconstruction is also written as a ptychodus
product file (``inference_outputs/product.h5``).
"""

from __future__ import annotations

import numpy as np

from ..io.geometry import scale_bar
from ..stages.reconstruction import write_object

INFERENCE_OUTPUTS = "inference_outputs"
NO_TRUTH_REASON = ("no ground truth: the data file holds no object (objectGuess, CXI "
                   "/entry_1/ptychotrace/object_truth or a ptychodus object marked as truth); "
                   "nothing to compare against")


def _stats(a: np.ndarray) -> dict:
    a = np.asarray(a, np.float64)
    if a.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
            "max": float(a.max())}


def _scan(ds, px_m: float | None) -> dict:
    from ..physics.scan import median_spacing

    try:                               # the grouping's raster step: coincident points ignored
        step = median_spacing(np.asarray(ds.xcoords), np.asarray(ds.ycoords))
    except ValueError:                 # one position, or all positions coincide
        step = None
    ext = [float(np.ptp(ds.xcoords)), float(np.ptp(ds.ycoords))]
    return {"positions": ds.n_patterns, "train": int(len(ds.indices("train"))),
            "test": int(len(ds.indices("test"))), "extent_px_xy": ext, "median_step_px": step,
            "extent": [scale_bar(e, px_m) for e in ext],
            "median_step": None if step is None else scale_bar(step, px_m)}


def stage_no_truth(req, rec, ds, model, pred, log) -> dict:
    """Record the no-truth comparison; returns the comparison dict (``available: False``)."""
    out = req.output_dir
    inf = out / INFERENCE_OUTPUTS
    geom = ds.metadata.get("geometry") or {}
    px_m = geom.get("object_pixel_width_m")
    cov = pred.covered
    amp = np.where(cov, pred.amplitude, 0).astype(np.float32)
    # the one image writer: uncovered pixels masked, phase range fitted (stages.reconstruction)
    arts = [f"{INFERENCE_OUTPUTS}/{p}" for p in write_object(
        inf, amp, pred.phase, cov, "reconstructed (no ground truth)",
        amp_limits=(0.0, float(amp.max()) or 1.0), pixel_size_m=px_m)]
    h, w = amp.shape
    recon = {"shape": [h, w], "coverage_fraction": float(cov.mean()),
             "amplitude_covered": _stats(pred.amplitude[cov]),
             "phase_covered_rad": _stats(pred.phase[cov]),
             "field_of_view": [scale_bar(w, px_m), scale_bar(h, px_m)],
             "object_pixel": None if px_m is None else scale_bar(1.0, px_m)}
    probe = {"energy_photons": float(np.sum(np.abs(ds.probe.astype(np.complex128)) ** 2)),
             "shape": list(ds.probe.shape), "scaling": geom.get("probe_scaling"),
             "modes_in_file": geom.get("probe_modes_in_file"),
             "width": scale_bar(ds.patch_size, px_m)}
    block = {"available": False, "reason": NO_TRUTH_REASON, "reconstruction": recon,
             "probe": probe, "scan": _scan(ds, px_m),
             "detector_mask": {"masked_fraction": ds.masked_fraction},
             "data_consistency": "see the 'data_consistency' block and "
                                 "consistency/consistency.json (evaluate/consistency)"}
    if geom.get("object_frame") and geom.get("photon_energy_eV"):
        block["product_file"] = _write_product(inf, ds, geom, pred)
        arts.append(block["product_file"])
    for a in arts:
        rec.add_artifact(a)
    rec.set_block("comparison", block)
    log(f"compare: {NO_TRUTH_REASON.split(':')[0]}; coverage {recon['coverage_fraction']:.3f}, "
        f"amplitude mean {recon['amplitude_covered']['mean']}")
    return block


def _write_product(inf, ds, geom: dict, pred) -> str:
    from ..io.geometry import Geometry
    from ..io.ptychodus import write_product

    g = Geometry.model_validate(geom)
    obj = (pred.amplitude * np.exp(1j * pred.phase)).astype(np.complex64)
    test = ds.indices("test")
    write_product(inf / "product.h5", obj, ds.probe, ds.xcoords[test], ds.ycoords[test],
                  ds.scan_index[test], g, name="ptychotrace reconstruction",
                  comments="PINN reconstruction of the test split (stitched)", force=True)
    return f"{INFERENCE_OUTPUTS}/product.h5"


def summary_lines(name: str, cmp: dict, consistency: dict | None) -> list[str]:
    """The run summary of a no-truth run (replaces the comparison table)."""
    r, p, s = cmp["reconstruction"], cmp["probe"], cmp["scan"]
    a = r["amplitude_covered"]

    def f(x):
        return "n/a" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x))

    lines = [f"# {name}: reconstruction summary (no ground truth)", "", f"- {cmp['reason']}.", "",
             "## Reconstruction",
             f"- stitched {r['shape'][0]}x{r['shape'][1]} px (field of view {r['field_of_view'][0]} x "
             f"{r['field_of_view'][1]}; object pixel {r['object_pixel'] or 'unknown'}), coverage "
             f"{f(r['coverage_fraction'])}",
             f"- amplitude on the covered region: mean {f(a['mean'])}, std {f(a['std'])}, "
             f"min {f(a['min'])}, max {f(a['max'])}",
             f"- phase (rad): mean {f(r['phase_covered_rad']['mean'])}, std "
             f"{f(r['phase_covered_rad']['std'])}", "", "## Probe",
             f"- {f(p['energy_photons'])} photons (sum |P|^2), {p['shape'][0]}x{p['shape'][1]} px "
             f"({p['width']}); scale: {(p['scaling'] or {}).get('stage', 'as in the file')} "
             f"(x{f((p['scaling'] or {}).get('factor'))})", "", "## Scan",
             f"- {s['positions']} positions (train {s['train']}, test {s['test']}), extent "
             f"{s['extent'][0]} x {s['extent'][1]}, median step {s['median_step'] or 'n/a'}",
             f"- detector mask: {100 * cmp['detector_mask']['masked_fraction']:.3g}% of pixels masked",
             "", "## Data consistency"]
    if consistency:   # run_metadata 'data_consistency' (evaluate/consistency_record.py)
        for k, label in (("final", "final reconstruction"), ("network_only", "network only")):
            v = consistency.get(k)
            if isinstance(v, dict):
                lines.append(f"- {label}: median normalised deviance D/E "
                             f"{f(v.get('normalised_median'))} (1 = consistent with the counts), "
                             f"fraction of patterns beyond the bound "
                             f"{f(v.get('fraction_beyond_bound'))}, median relative misfit "
                             f"{f(v.get('relative_misfit_median'))}")
        lines.append(f"- record: {consistency.get('path')}")
    else:
        lines.append("- not recorded (the data-consistency module is not part of this build)")
    if cmp.get("product_file"):
        lines += ["", f"Reconstruction written as a ptychodus product: {cmp['product_file']}"]
    return lines + [""]
