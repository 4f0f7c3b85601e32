"""Generalisation of the network alone (issue #12): trained on a corpus, scored on unseen objects.

    .venv/bin/python benchmarks/bench_generalisation.py                 # the documented run
    .venv/bin/python benchmarks/bench_generalisation.py --quick         # a smoke run (~1-2 min)

Two models with the same network, schedule and training-time cap, on the same scenario (small
sizes so the whole run stays under ~15 min on a loaded 2-core CPU):

    corpus     the scenario's training split + a corpus (lines of other seeds, Gaussian random
               fields, Siemens stars, textures from skimage images), the scenario's physical probe
    scenario   the scenario's training split only (the control)

Each is scored network-only (``refine_steps 0``, twin fix as the inference default) on

    train_object_test   the test split of the training object (the usual score)
    lines_unseen        a lines object of a seed neither model saw
    grf_unseen / siemens_unseen / texture_unseen
                        other families at seeds outside the corpus (the texture from an image
                        not in the training list)

each scanned with the same physical probe and photons per pattern scale; covered region of the
scan, no rescale, no registration (evaluate.metrics.compare_reconstruction, SSIM data range = the
truth amplitude's max - min). Results: benchmarks/results/generalisation.json.

``--models NAME=DIR ...`` trains nothing: it scores already trained models (``study_network.py``
run directories) the same way, on the scenario's test split simulated with ``--N``,
``--object-size`` and ``--patterns`` (give the study's values) and on the four unseen objects:

    .venv/bin/python benchmarks/bench_generalisation.py --models unet_bp_u1=/tmp/.../train_outputs \
        --N 64 --object-size 392 --patterns 500 --unseen-patterns 500 --output results/X.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ptychotrace.config import InferenceConfig, resolve_scenario
from ptychotrace.data.corpus import build_training_dataset, make_object, object_scan_dataset
from ptychotrace.evaluate.metrics import compare_reconstruction
from ptychotrace.infer.predict import predict
from ptychotrace.simulate import simulate
from ptychotrace.train.checkpoint import load_model
from ptychotrace.train.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, record_result  # noqa: E402

ROOT = Path(__file__).resolve().parent
TRAIN_TEXTURES = ("camera", "brick", "grass")
UNSEEN_TEXTURES = ("gravel", "moon")


def score(obj: np.ndarray, covered: np.ndarray, truth: np.ndarray) -> dict:
    """Amplitude Pearson/SSIM/MAE, least-squares scale and phase Pearson on the covered region."""
    rng = float(np.ptp(np.abs(truth)))
    cmp = compare_reconstruction(obj, truth, covered, register=False, amplitude_data_range=rng)
    a = cmp["amplitude"]
    p = np.abs(obj)[covered].astype(np.float64)
    t = np.abs(truth)[covered].astype(np.float64)
    return {"amp_pearson": a["pearson_r"], "amp_ssim": a["ssim"], "amp_mae": a["mae"],
            "lsq_scale": float((p * t).sum() / (p * p).sum()) if (p * p).sum() else None,
            "phase_pearson": cmp["phase"].get("pearson_r"), "phase_mae": cmp["phase"].get("mae"),
            "coverage_fraction": float(covered.mean()), "ssim_data_range": rng}


def configs(args):
    base = {"simulation.N": args.N, "simulation.object_size": args.object_size,
            "simulation.base_total_images": args.patterns, "simulation.buffer": 8.0,
            "grouping.group_count": 100000, "training.nepochs": args.epochs,
            "training.batch_size": args.batch_size, "training.device": "cpu",
            "training.seed": args.seed, "inference.refine_steps": 0}
    corpus = {"corpus.families": ["lines", "grf", "siemens", "texture"],
              "corpus.count": args.corpus_count, "corpus.patterns_per_object": args.corpus_patterns,
              "corpus.object_size": args.object_size, "corpus.seed": 1000,
              "corpus.textures": list(TRAIN_TEXTURES)}
    with_corpus, _, _ = resolve_scenario(args.scenario, {**base, **corpus}, use_profile=False)
    plain, _, _ = resolve_scenario(args.scenario, base, use_profile=False)
    return with_corpus, plain


def unseen_datasets(cfg, scen, args) -> dict:
    """Objects outside both training sets, scanned with the scenario's physical probe."""
    amp = np.abs(scen.obj)
    amp_range = (float(np.percentile(amp, 1)), float(np.percentile(amp, 99)))
    size = args.object_size
    unseen_corpus = cfg.corpus.model_copy(update={"textures": UNSEEN_TEXTURES})
    specs = {"lines_unseen": ("lines", 7), "grf_unseen": ("grf", 9001),
             "siemens_unseen": ("siemens", 9002), "texture_unseen": ("texture", 9003)}
    out = {}
    for name, (family, seed) in specs.items():
        obj = make_object(family, seed, size, unseen_corpus, amp_range,
                          lines_phase=cfg.simulation.object_phase, lines_density_size=size)
        out[name] = object_scan_dataset(obj, scen.probe, args.unseen_patterns, 8.0, seed=seed,
                                        metadata={"simulation": cfg.simulation.model_dump(mode="json")})
    return out


def score_model(name: str, model, evals: dict) -> dict:
    """Network-only scores (``refine_steps 0``) of one model on every evaluation dataset."""
    inf = InferenceConfig(refine_steps=0)
    scores = {}
    for key, ds in evals.items():
        pred = predict(model, ds, inf)
        scores[key] = {**score(pred.obj, pred.covered, ds.obj), "patterns": pred.n_patterns,
                       "network_patterns_per_second": pred.patterns_per_second}
        print(f"  {name:12s} {key:18s} SSIM {scores[key]['amp_ssim']:.3f} Pearson "
              f"{scores[key]['amp_pearson']:.3f}", flush=True)
    return scores


def run_model(name, cfg, train_ds, evals, work: Path, args) -> dict:
    t0 = time.perf_counter()
    res = train(cfg, train_ds, work / name, progress=False, time_limit_s=args.train_seconds,
                log=lambda *a: None)
    train_s = time.perf_counter() - t0
    scores = score_model(name, load_model(work / name), evals)
    hist = json.loads(Path(res.history_path).read_text())["metrics"]
    return {"training": {"status": res.status, "epochs_completed": res.epochs_completed,
                         "train_seconds": train_s, "samples_per_second": res.samples_per_second,
                         "training_patterns": int(len(train_ds.indices("train"))),
                         "best_val_loss": res.best_val_loss, "val_loss": hist.get("val_loss"),
                         "pred_amp_std": hist.get("pred_amp_std")},
            "scores": scores}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="gs1_custom")
    ap.add_argument("--N", type=int, default=32)
    ap.add_argument("--object-size", type=int, default=128)
    ap.add_argument("--patterns", type=int, default=400, help="scenario patterns (both splits)")
    ap.add_argument("--corpus-count", type=int, default=8)
    ap.add_argument("--corpus-patterns", type=int, default=96)
    ap.add_argument("--unseen-patterns", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--train-seconds", type=float, default=330.0,
                    help="training-time cap per model (stops after the epoch crossing it)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--models", nargs="+", default=None, metavar="NAME=DIR",
                    help="score these trained models (run directories) instead of training two")
    ap.add_argument("--output", default=str(ROOT / "results" / "generalisation.json"))
    args = ap.parse_args(argv)
    if args.models:
        return score_trained(args)
    if args.quick:
        args.patterns, args.corpus_count, args.corpus_patterns = 128, 4, 32
        args.unseen_patterns, args.epochs, args.train_seconds = 48, 2, 30.0
    torch.manual_seed(args.seed)
    t_all = time.perf_counter()
    cfg_c, cfg_p = configs(args)
    scen, _ = simulate(cfg_c.simulation, scenario=args.scenario)
    corpus_ds, manifest = build_training_dataset(cfg_c, scen, None, log=lambda *a: None)
    evals = {"train_object_test": scen, **unseen_datasets(cfg_c, scen, args)}
    work = Path(tempfile.mkdtemp(prefix="bench_generalisation_"))
    models = {}
    for name, cfg, tds in (("corpus", cfg_c, corpus_ds), ("scenario", cfg_p, scen)):
        print(f"training {name} ({len(tds.indices('train'))} patterns, cap {args.train_seconds} s)",
              flush=True)
        models[name] = run_model(name, cfg, tds, evals, work, args)
    result = {
        "benchmark": "generalisation", "command": " ".join(sys.argv),
        "scenario": args.scenario, "N": args.N, "object_size": args.object_size,
        "nphotons": cfg_c.simulation.nphotons, "dose_scale": scen.dose_scale,
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "training_set": manifest.summary(),
        "corpus_entries": [e.model_dump(mode="json") for e in manifest.entries],
        "unseen": {"lines_unseen": "lines seed 7", "grf_unseen": "grf seed 9001",
                   "siemens_unseen": "siemens seed 9002",
                   "texture_unseen": f"texture seed 9003 from {list(UNSEEN_TEXTURES)}"},
        "evaluation": "network only (refine_steps 0, twin fix default), covered region of each "
                      "scan, no rescale, no registration",
        "models": models, "wall_seconds": time.perf_counter() - t_all,
        "machine": describe_machine(),
        "note": "timings taken on a shared, loaded 2-core machine: compare within this run only",
    }
    record_result(result, args.output)
    return 0


def score_trained(args) -> int:
    """The ``--models`` mode: network-only scores of trained models on the scenario's test split
    and on the unseen objects, each scanned with the scenario's physical probe."""
    named = {}
    for item in args.models:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).exists():
            raise SystemExit(f"--models takes NAME=DIR with an existing run directory, got {item!r}")
        named[name] = Path(path)
    cfg_c, _ = configs(args)
    scen, _ = simulate(cfg_c.simulation, scenario=args.scenario)
    evals = {"train_object_test": scen, **unseen_datasets(cfg_c, scen, args)}
    models = {}
    for name, path in named.items():
        model = load_model(path)
        if model.net_cfg.N != args.N:
            raise SystemExit(f"{name}: model N {model.net_cfg.N} != --N {args.N}")
        scores = score_model(name, model, evals)
        models[name] = {"run_dir": str(path), "network": model.net_cfg.to_dict(), "scores": scores}
    record_result({"benchmark": "generalisation_trained_models", "command": " ".join(sys.argv),
                   "scenario": args.scenario, "N": args.N, "object_size": args.object_size,
                   "settings": {k: v for k, v in vars(args).items() if k != "output"},
                   "unseen": {"lines_unseen": "lines seed 7", "grf_unseen": "grf seed 9001",
                              "siemens_unseen": "siemens seed 9002",
                              "texture_unseen": f"texture seed 9003 from {list(UNSEEN_TEXTURES)}"},
                   "evaluation": "network only (refine_steps 0), covered region, no rescale",
                   "models": models, "machine": describe_machine()}, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
