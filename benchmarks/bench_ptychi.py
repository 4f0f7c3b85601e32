"""`ptychotrace baseline` next to pty-chi's LSQ-ML on the same data (issue #12's baseline bar).

    python benchmarks/bench_ptychi.py --doses 1e4 --seeds 42 43 44      # results/baseline_ptychi.json

pty-chi (Argonne's PyTorch ptychography library, ``pip install ptychi``) is an optional,
benchmark-only dependency; nothing in ptychotrace imports it. Installing it beside our CPU torch
without pulling another torch (its wheel lists torchvision, mypy, ruff and pytest as
requirements; only pandas, scikit-learn and tqdm are needed to run LSQ-ML):

    .venv/bin/pip install --no-deps ptychi==2.2.0 pandas scikit-learn joblib threadpoolctl \
        tqdm python-dateutil pytz tzdata

ptychi imports ``torchvision.transforms.GaussianBlur`` at module level, and PyPI's torchvision does
not import beside the torch 2.13.0 CPU build; when torchvision is missing this script registers a
stand-in module that raises if anything calls it (LSQ-ML never does) and records that it did.

Per simulation seed and dose: gs1_ideal's test split, simulated by ptychotrace. pty-chi gets the
measured counts, the known probe and the known positions, both frozen, a flat start (ones), and
its LSQ-ML defaults (Gaussian noise model, preconditioner damping 0.1, minibatches of 100 in
random order, optimal-step scaler 0.9, Fourier sub-pixel patch shifts) for ``--epochs`` epochs,
with two changes that keep the object in physical units: ``remove_object_probe_ambiguity`` and
``rescale_probe_intensity_in_first_epoch`` are off. Both move the object's mean amplitude into the
probe even when the probe is frozen (``--ptychi-defaults`` measures what they do to the scores).
Conventions, mapped: pty-chi's far field is unnormalised (``|F|^2`` is N^2 times ours), so its
probe is ours / N; its data are centred like ours (``fft_shift=True``); a position is the patch
centre relative to ``round(W/2) - 0.5`` of its object buffer, with patch pixel ``c`` at
``p - (N - 1)/2 + c``, and the buffer is our padded canvas. Before reconstructing, pty-chi's forward
model is run on the true object and compared with ours (``model_mismatch``, relative L1 of the
expected counts; the run stops above 1 %: a convention slip would show there first).
Both objects are scored by the one evaluation (``stages.evaluate``: covered & illuminated region
of our baseline, sub-pixel registration, no rescale). ``ptychotrace baseline`` runs with its
defaults, plain, with ``smooth=True`` (its held-out low-pass), and on the positions rounded to
whole pixels (a model error that removes the bilinear interpolation's sub-pixel low-pass: it
tells whether the interpolation model, not the algorithm, separates the two). One torch thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, record_result  # noqa: E402
from ptychotrace.baseline.solver import reconstruct  # noqa: E402
from ptychotrace.config import resolve_scenario  # noqa: E402
from ptychotrace.physics.forward import expected_counts, extract_patches, required_pad  # noqa: E402
from ptychotrace.simulate import simulate  # noqa: E402
from ptychotrace.stages.evaluate import evaluate  # noqa: E402

#: Largest accepted relative L1 difference between pty-chi's and our expected counts of the true
#: object (Fourier against bilinear sub-pixel shifts: 0.14 % on gs1_ideal).
MAX_MODEL_MISMATCH = 0.01


def import_ptychi() -> tuple[types.ModuleType, type, str]:
    """(ptychi.api, PtychographyTask, torchvision note)."""
    note = "torchvision imported"
    try:
        importlib.import_module("torchvision.transforms")
    except Exception:  # missing, or PyPI's build failing beside the CPU torch
        stub = types.ModuleType("torchvision")
        transforms = types.ModuleType("torchvision.transforms")

        class GaussianBlur:   # the only name ptychi imports at module level
            def __init__(self, *args, **kwargs):
                raise RuntimeError("torchvision stand-in (bench_ptychi.py): not available")

        transforms.GaussianBlur = GaussianBlur
        stub.transforms = transforms
        sys.modules["torchvision"], sys.modules["torchvision.transforms"] = stub, transforms
        note = "stand-in module (torchvision not importable here; LSQ-ML does not use it)"
    try:
        api = importlib.import_module("ptychi.api")
        task_mod = importlib.import_module("ptychi.api.task")
    except ImportError as err:
        raise SystemExit(f"pty-chi is not installed ({err}); see this script's docstring") from err
    return api, task_mod.PtychographyTask, note


def ptychi_inputs(ds, idx: np.ndarray) -> dict:
    """Our dataset's test split in pty-chi's conventions (module docstring)."""
    n = ds.patch_size
    h, w = ds.obj.shape
    pad = required_pad(n)
    hb, wb = h + 2 * pad, w + 2 * pad
    return {"pad": pad, "buffer_shape": (hb, wb),
            "x_px": (ds.xcoords[idx] + pad - round(wb / 2)).astype(np.float32),
            "y_px": (ds.ycoords[idx] + pad - round(hb / 2)).astype(np.float32),
            "probe": (ds.probe / n).astype(np.complex64)[None, None],
            "counts": ds.counts[idx].astype(np.float32)}


def ptychi_task(api, task_cls, inp: dict, init: np.ndarray, *, epochs: int, batch: int,
                seed: int, optimise: bool, ptychi_defaults: bool):
    o = api.LSQMLOptions()
    o.data_options.free_space_propagation_distance_m = np.inf
    o.data_options.fft_shift = True
    o.object_options.pixel_size_m = 1.0
    o.object_options.optimizable = optimise
    o.probe_options.optimizable = False
    o.probe_position_options.optimizable = False
    if not ptychi_defaults:
        o.object_options.remove_object_probe_ambiguity.enabled = False
        o.reconstructor_options.rescale_probe_intensity_in_first_epoch = False
    o.reconstructor_options.num_epochs = epochs
    o.reconstructor_options.batch_size = batch
    o.reconstructor_options.default_device = "cpu"
    o.reconstructor_options.random_seed = seed
    return task_cls(o, diffraction_data=inp["counts"], object_data=init[None],
                    probe_data=inp["probe"], probe_position_x_px=inp["x_px"],
                    probe_position_y_px=inp["y_px"])


def model_mismatch(api, task_cls, ds, idx: np.ndarray, inp: dict) -> float:
    """Relative L1 difference of pty-chi's and our expected counts of the true object."""
    pad = inp["pad"]
    truth = np.pad(ds.obj, pad, constant_values=1).astype(np.complex64)
    task = ptychi_task(api, task_cls, inp, truth, epochs=1, batch=len(idx), seed=0,
                       optimise=False, ptychi_defaults=False)
    with torch.no_grad():
        theirs = task.reconstructor.forward_model(torch.arange(len(idx))).numpy()
    theirs = np.fft.fftshift(theirs, axes=(-2, -1))        # their model is DC-in-the-corner
    patches = extract_patches(torch.from_numpy(truth), torch.from_numpy(ds.xcoords[idx] + pad),
                              torch.from_numpy(ds.ycoords[idx] + pad), ds.patch_size)
    ours = expected_counts(torch.from_numpy(ds.probe.astype(np.complex64)), patches).numpy()
    return float(np.abs(theirs - ours).sum() / ours.sum())


def score(obj: np.ndarray, ds, ref, lit: np.ndarray | None = None) -> dict:
    """Amplitude SSIM / Pearson on ``ref``'s covered & illuminated pixels (& ``lit``)."""
    illuminated = ref.illuminated if lit is None else ref.illuminated & lit
    amp = evaluate(obj, ds.obj, ref.covered, illuminated, recorded_scale=1.0).amplitude
    return {"ssim": amp.ssim, "pearson": amp.pearson_r}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--doses", type=float, nargs="+", default=[1e4], help="photons per pattern")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--ptychi-defaults", action="store_true",
                    help="keep pty-chi's probe-rescaling defaults (see the docstring)")
    ap.add_argument("--note", default="")
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" /
                                            "baseline_ptychi.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    api, task_cls, tv_note = import_ptychi()
    import ptychi

    rows = []
    for dose in args.doses:
        for seed in args.seeds:
            cfg, _, _ = resolve_scenario("gs1_ideal", {"simulation.nphotons": dose,
                                                       "simulation.sim_seed": seed})
            ds, _ = simulate(cfg.simulation, scenario="gs1_ideal")
            idx = ds.indices("test")
            inp = ptychi_inputs(ds, idx)
            mismatch = model_mismatch(api, task_cls, ds, idx, inp)
            if mismatch > MAX_MODEL_MISMATCH:
                raise SystemExit(f"pty-chi's forward model differs from ours by {mismatch:.2%} "
                                 "on the true object: a convention is mapped wrongly")
            t0 = time.perf_counter()
            task = ptychi_task(api, task_cls, inp, np.ones(inp["buffer_shape"], np.complex64),
                               epochs=args.epochs, batch=args.batch_size, seed=0, optimise=True,
                               ptychi_defaults=args.ptychi_defaults)
            task.run()
            t_ptychi = time.perf_counter() - t0
            pad = inp["pad"]
            h, w = ds.obj.shape
            obj = task.get_data_to_cpu("object", as_numpy=True)[0][pad:pad + h, pad:pad + w]
            probe = task.get_data_to_cpu("probe", as_numpy=True)[0, 0]
            probe_scale = float(np.sqrt((np.abs(probe) ** 2).sum() /
                                        (np.abs(inp["probe"]) ** 2).sum()))
            t0 = time.perf_counter()
            plain = reconstruct(ds, split="test", seed=0)
            t_plain = time.perf_counter() - t0
            smooth = reconstruct(ds, split="test", seed=0, smooth=True)
            # our solver with the positions rounded: a model without bilinear sub-pixel
            # interpolation (like pty-chi's update, placed at rounded positions), on the same counts
            rounded = reconstruct(dataclasses.replace(ds, xcoords=np.round(ds.xcoords),
                                                      ycoords=np.round(ds.ycoords)),
                                  split="test", seed=0)
            row = {"dose": dose, "sim_seed": seed, "patterns": int(len(idx)),
                   "model_mismatch": mismatch,
                   "ptychi": {**score(obj, ds, plain), "epochs": args.epochs,
                              "seconds": t_ptychi, "probe_scale_after": probe_scale},
                   "ptychotrace": {**score(plain.obj, ds, plain), "seconds": t_plain,
                                   "iterations": plain.iterations,
                                   "best_iteration": plain.best_iteration,
                                   "refit_iterations": plain.refit_iterations},
                   "ptychotrace_smooth": {**score(smooth.obj, ds, plain),
                                          "sigma_px": smooth.params.get("smooth_sigma_px")},
                   # (& its own illuminated pixels: its zeros outside them must not be scored)
                   "ptychotrace_rounded_positions": score(rounded.obj, ds, plain,
                                                          rounded.illuminated)}
            rows.append(row)
            print(f"dose {dose:g} seed {seed}: pty-chi SSIM {row['ptychi']['ssim']:.3f} "
                  f"P {row['ptychi']['pearson']:.3f} | ptychotrace "
                  f"{row['ptychotrace']['ssim']:.3f} / {row['ptychotrace']['pearson']:.3f} | "
                  f"smooth {row['ptychotrace_smooth']['ssim']:.3f} / "
                  f"{row['ptychotrace_smooth']['pearson']:.3f} (model mismatch "
                  f"{mismatch:.2%})", flush=True)
    machine = describe_machine()
    machine["note"] = args.note
    return record_result({"benchmark": "baseline_ptychi", "scenario": "gs1_ideal",
                          "split": "test", "command": " ".join(sys.argv),
                          "ptychi_version": getattr(ptychi, "__version__", "unknown"),
                          "torchvision": tv_note, "ptychi_defaults": args.ptychi_defaults,
                          "batch_size": args.batch_size, "rows": rows, "machine": machine},
                         args.output)


if __name__ == "__main__":
    main()
