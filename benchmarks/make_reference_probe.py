"""The reference PINN's gs1_custom probe, as a probe file for ``simulation.probe_file``.

    .venv/bin/python benchmarks/make_reference_probe.py SOURCE.npz OUTPUT.npz

The reference's "sim_lines_4x" gs1_custom row used a measured probe (its Run1084 reconstruction)
where our gs1_custom uses the spec's modelled zone plate. To train and score on the reference's
problem, read its ``probeGuess`` (64 x 64 complex) from an NPZ of the reference's public
repository (``hoidn/PtychoPINN``, ``datasets/Run1084_recon3_postPC.npz``; sha256 recorded below)
and smooth it as the reference's workflow does (``probe_smoothing_sigma`` 0.5): a Gaussian of
that width on the amplitude and, separately, on the unwrapped phase. The file is never committed
here (it is another project's data); this script records where it came from.

The NPZ is read without unpickling. The output holds ``probeGuess`` (complex64) and a JSON
``provenance`` string (source path and sha256, sigma, method). The simulator normalises the probe
itself (spec: ``probe_scale`` 4 for custom), so the probe's own scale does not matter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.restoration import unwrap_phase

#: sha256 of the file the recorded Run1084 studies used (hoidn/PtychoPINN commit d78affb).
KNOWN_SHA256 = {"Run1084_recon3_postPC.npz":
                "90ea7f6e416ee1a720cf1a4e092d2fcb1da828cc18398e38c9a8576ec160e070"}


def smooth_amplitude_and_phase(probe: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing (sigma in pixels) of |probe| and of its unwrapped phase, separately:
    smoothing the real and imaginary parts instead would blur across phase wraps."""
    if sigma_px <= 0:
        return probe.astype(np.complex64)
    amplitude = gaussian_filter(np.abs(probe), sigma_px)
    phase = gaussian_filter(unwrap_phase(np.angle(probe)), sigma_px)
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="an NPZ with probeGuess (the reference's Run1084)")
    ap.add_argument("output", type=Path)
    ap.add_argument("--sigma", type=float, default=0.5, help="smoothing width, px (reference: 0.5)")
    ap.add_argument("--force", action="store_true", help="overwrite OUTPUT")
    args = ap.parse_args(argv)
    if args.output.exists() and not args.force:
        ap.error(f"{args.output} exists; pass --force to overwrite it")
    digest = hashlib.sha256(args.source.read_bytes()).hexdigest()
    known = KNOWN_SHA256.get(args.source.name)
    if known is not None and known != digest:
        print(f"warning: {args.source.name} has sha256 {digest}, the recorded studies used "
              f"{known}", file=sys.stderr)
    with np.load(args.source, allow_pickle=False) as z:
        if "probeGuess" not in z.files:
            ap.error(f"{args.source}: no probeGuess (keys: {sorted(z.files)})")
        raw = np.asarray(z["probeGuess"])
    if raw.ndim != 2 or raw.shape[0] != raw.shape[1] or not np.iscomplexobj(raw):
        ap.error(f"{args.source}: probeGuess must be square complex 2-D, got {raw.dtype} "
                 f"{raw.shape}")
    probe = smooth_amplitude_and_phase(raw, args.sigma)
    provenance = {"source": str(args.source), "source_sha256": digest, "sigma_px": args.sigma,
                  "method": "gaussian on amplitude and on unwrapped phase, separately"}
    np.savez(args.output, probeGuess=probe, provenance=np.array(json.dumps(provenance)))
    print(json.dumps(provenance))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
