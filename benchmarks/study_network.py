"""Network-only quality vs training time (issue #12): network variants, data size, schedule, seeds.

    python benchmarks/study_network.py --scenario gs2_ideal --variants plain unet \
        --base-total-images 500 --group-count 500 --nepochs 10 --stages 2 5 10 \
        --output benchmarks/results/study_network_arch_gs2.json

For every (variant, seed): simulate the scenario once (simulation seeds fixed, so every variant
and training seed sees the same data), train with the collapse guard on, and at the ``--stages``
epochs load the checkpoint of that epoch (the 'last' one, just written) and score the network
alone on the test split: ``refine_steps 0`` (the twin fix stays on where it applies; it is not a
refinement), covered region, no rescale, no registration, SSIM data range = the truth amplitude's
max - min (bench_pinn.score: the recipe of docs/benchmarks.md). After the last epoch the *best*
checkpoint (what ``infer`` loads) is scored network-only and with the default refinement.
``train_seconds`` is the sum of the epochs' optimiser-loop seconds (no validation, no scoring);
``wall_seconds`` includes validation and checkpoints. Results are rewritten after every run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402
from bench_pinn import score  # noqa: E402
from ptychotrace.config import resolve_scenario  # noqa: E402
from ptychotrace.data.container import truth_patches  # noqa: E402
from ptychotrace.data.corpus import build_training_dataset  # noqa: E402
from ptychotrace.data.dataset import TEST, TRAIN  # noqa: E402
from ptychotrace.infer.predict import predict  # noqa: E402
from ptychotrace.model.network import NetworkConfig, PtychoNet, network_macs  # noqa: E402
from ptychotrace.simulate import simulate  # noqa: E402
from ptychotrace.telemetry.writers import write_json  # noqa: E402
from ptychotrace.train.checkpoint import load_model  # noqa: E402
from ptychotrace.train.trainer import train  # noqa: E402

#: Named network variants (training-config overrides).
VARIANTS = {
    "plain": {},
    "plain_w2": {"training.width": 2},
    "unet": {"training.arch": "unet"},
    "plain_gn": {"training.norm": "group"},
    "plain_res": {"training.residual": True},
    "unet_gn": {"training.arch": "unet", "training.norm": "group"},
    "unet_res_gn": {"training.arch": "unet", "training.norm": "group", "training.residual": True},
    "plain_res_gn": {"training.norm": "group", "training.residual": True},
    "plain_sp1": {"training.spectral_blocks": 1},
    "plain_sp2": {"training.spectral_blocks": 2},
    "plain_log": {"training.input_transform": "log"},
    "plain_pos": {"training.position_channels": True},      # gridsize > 1 only
    "plain_bp": {"training.input_transform": "backprop"},
    "unet_bp": {"training.arch": "unet", "training.input_transform": "backprop"},
    **{f"unet_bp_u{k}": {"training.arch": "unet", "training.input_transform": "backprop",
                         "training.unrolled_stages": k} for k in (1, 2, 3)},
}


def _score_model(run_dir: Path, ds, cfg, which: str, refine: bool) -> dict:
    model = load_model(run_dir, which=which)
    truth = ds.obj
    rng = float(np.ptp(np.abs(truth)))
    out = {}
    variants = {"network_only": cfg.inference.model_copy(update={"refine_steps": 0})}
    if refine:
        variants["refined"] = cfg.inference
    for name, icfg in variants.items():
        t0 = time.perf_counter()
        pred = predict(model, ds, icfg)
        out[name] = {**score(pred.obj, pred.covered, truth, rng),
                     "patterns": int(pred.n_patterns),
                     "network_patterns_per_second": pred.patterns_per_second,
                     "seconds": time.perf_counter() - t0}
    return out


def run_one(scenario: str, variant: str, seed: int, args, ds, workdir: Path, log) -> dict:
    over = {**VARIANTS[variant], "training.seed": seed, "training.device": "cpu",
            "training.nepochs": args.nepochs, "training.batch_size": args.batch_size,
            "training.lr_schedule": args.lr_schedule,
            "simulation.base_total_images": args.base_total_images,
            "grouping.group_count": args.group_count,
            "training.early_stopping_patience": args.early_stopping,
            "training.time_limit_s": args.time_limit, **corpus_overrides(args)}
    if args.lr is not None:
        over["training.lr"] = args.lr
    for item in args.set:
        key, _, value = item.partition("=")
        over[key] = json.loads(value)
    cfg, _, _ = resolve_scenario(scenario, over)
    run_dir = workdir / f"{scenario}_{variant}_s{seed}_{args.tag}"
    stages, rows = set(args.stages), []
    t_wall = time.perf_counter()
    train_s = [0.0]

    def after_epoch(trainer, epoch, ep):
        train_s[0] += ep["epoch_seconds"]
        if epoch in stages:
            sc = _score_model(run_dir, ds, cfg, "last", refine=False)["network_only"]
            rows.append({"epoch": epoch, "train_seconds": train_s[0],
                         "wall_seconds": time.perf_counter() - t_wall,
                         "val_loss": ep.get("val_loss"), "lr": ep["lr"],
                         "pred_amp_cv": ep.get("pred_amp_cv"), "network_only": sc})
            log(f"  {variant} s{seed} epoch {epoch} ({train_s[0]:.0f} s train): network-only "
                f"P {sc['pearson']:.3f} SSIM {sc['ssim']:.3f} scale {sc['lsq_scale']:.3f}")

    train_ds, manifest = ds, None
    if cfg.corpus.enabled:
        # Extra training data (data/corpus.py); the test split stays the scenario's.
        train_ds, manifest = build_training_dataset(cfg, ds, run_dir / "corpus_cache", log=log)
    res = train(cfg, train_ds, run_dir, progress=False, hooks={"after_epoch": after_epoch},
                log=log)
    final = _score_model(run_dir, ds, cfg, "best", refine=not args.no_refine)
    hist = json.loads(Path(res.history_path).read_text())
    net_cfg = NetworkConfig.from_dict(load_model(run_dir).checkpoint["network"])
    log(f"{scenario} {variant} s{seed}: {res.status}, {res.epochs_completed} epochs, best epoch "
        f"{res.best_epoch}; network-only SSIM {final['network_only']['ssim']:.3f}"
        + (f", refined {final['refined']['ssim']:.3f}" if "refined" in final else ""))
    return {"scenario": scenario, "variant": variant, "overrides": VARIANTS[variant], "extra_overrides": list(args.set), "seed": seed,
            "base_total_images": args.base_total_images, "group_count": args.group_count,
            "train_patterns": int(len(train_ds.indices("train"))),
            "corpus": None if manifest is None else manifest.model_dump(mode="json"),
            "batch_size": args.batch_size,
            "nepochs": args.nepochs, "lr_schedule": args.lr_schedule, "lr": cfg.training.lr,
            "status": res.status, "epochs_completed": res.epochs_completed,
            "best_epoch": res.best_epoch, "best_val_loss": res.best_val_loss,
            "train_seconds": train_s[0], "wall_seconds": time.perf_counter() - t_wall,
            "samples_per_second": res.samples_per_second,
            "collapse_events": res.collapse_events, "network": net_cfg.to_dict(),
            "macs": network_macs(net_cfg), "stages": rows, "final_best": final,
            "history": {k: hist["metrics"].get(k) for k in
                        ("loss", "val_loss", "lr", "pred_amp_cv", "epoch_seconds")}}


def data_overrides(items: list[str]) -> dict:
    """The ``simulation.*``, ``grouping.*`` and ``inference.*`` entries of ``--set KEY=JSON``
    items: they set the test data and its scoring (e.g. ``inference.stitch_window``) as well as
    the training data."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key.startswith(("simulation.", "grouping.", "inference.")):
            out[key] = json.loads(value)
    return out


def corpus_overrides(args) -> dict:
    """The ``corpus.*`` overrides of the study's data flags (none: the scenario's split only)."""
    over = {}
    if args.train_dense_step is not None:
        over["corpus.train_dense_step"] = args.train_dense_step
    if args.train_extra_positions:
        over["corpus.train_extra_positions"] = args.train_extra_positions
    if args.corpus_count:
        over.update({"corpus.count": args.corpus_count,
                     "corpus.families": tuple(args.corpus_families),
                     "corpus.patterns_per_object": args.corpus_patterns})
    return over


#: Radial bins (pixels from the patch centre) of :func:`patch_error_by_radius`.
RADIUS_BINS_PX = (0, 2, 4, 6, 8, 10, 12, 16)


def patch_error_by_radius(pred, truth: np.ndarray) -> list[dict]:
    """How a predicted patch's amplitude degrades away from its centre: per ring of
    RADIUS_BINS_PX, the mean |pred - truth| and the Pearson correlation over all patches'
    pixels in that ring, the truth patch cut at the same position (no stitching)."""
    n = pred.patches.shape[-1]
    tp = np.abs(truth_patches(truth, pred.xcoords, pred.ycoords, n)).astype(np.float64)
    pp = np.abs(pred.patches).astype(np.float64)
    yy, xx = np.mgrid[:n, :n] - n // 2
    r = np.hypot(xx, yy)
    rows = []
    for lo, hi in zip(RADIUS_BINS_PX[:-1], RADIUS_BINS_PX[1:], strict=True):
        ring = (r >= lo) & (r < hi)
        a, b = pp[:, ring].ravel(), tp[:, ring].ravel()
        rows.append({"r_from_px": lo, "r_to_px": hi, "amp_mae": float(np.abs(a - b).mean()),
                     "amp_pearson": float(np.corrcoef(a, b)[0, 1])})
    return rows


def score_splits(run_dir: Path, args) -> dict:
    """Network-only score of one trained run on its own training split and on the test split
    (the scenario's positions in each half; the dense training scan is not re-scored)."""
    cfg, _, _ = resolve_scenario(args.scenario, {
        "simulation.base_total_images": args.base_total_images,
        "grouping.group_count": args.group_count, **data_overrides(args.set)})
    ds, _ = simulate(cfg.simulation, scenario=args.scenario)
    model = load_model(run_dir, which="best")
    rng = float(np.ptp(np.abs(ds.obj)))
    out = {"machine": describe_machine(), "command": " ".join(sys.argv), "run": str(run_dir),
           "network": model.checkpoint["network"], "splits": {}}
    icfg = cfg.inference.model_copy(update={"refine_steps": 0})
    # --set grouping.* regroups the scored data (e.g. the reference's test groups: block_stride
    # 5 on a 2-px raster); predict() otherwise groups as the checkpoint was trained.
    regroup = {k.split(".", 1)[1]: v for k, v in data_overrides(args.set).items()
               if k.startswith("grouping.")}
    ckpt = model.checkpoint
    if regroup:
        ckpt = {**ckpt, "config": {**ckpt["config"],
                                   "grouping": {**ckpt["config"]["grouping"], **regroup}}}
    out["grouping"] = ckpt["config"]["grouping"]
    for split in ("train", "test"):
        # predict() reconstructs the 'test' split: relabel to score the training half.
        view = ds if split == "test" else replace(
            ds, split=np.where(ds.split == TRAIN, TEST, TRAIN).astype(ds.split.dtype))
        pred = predict(model, view, icfg, ckpt=ckpt)
        # The reference PINN's recipe scales the prediction to the truth's mean before its SSIM.
        p_amp, t_amp = np.abs(pred.obj)[pred.covered], np.abs(ds.obj)[pred.covered]
        mean_scale = float(t_amp.mean() / p_amp.mean())
        rescaled = score(pred.obj * mean_scale, pred.covered, ds.obj, rng)
        out["splits"][split] = {**score(pred.obj, pred.covered, ds.obj, rng),
                                "mean_scale": mean_scale,
                                "patch_error_by_radius": patch_error_by_radius(pred, ds.obj),
                                "ssim_mean_rescaled": rescaled["ssim"],
                                "patterns": int(pred.n_patterns),
                                "coverage_fraction": pred.coverage_fraction}
        sc = out["splits"][split]
        print(f"{split}: network-only P {sc['pearson']:.3f} SSIM {sc['ssim']:.3f} "
              f"(mean-rescaled {sc['ssim_mean_rescaled']:.3f}) scale {sc['lsq_scale']:.3f} "
              f"({sc['patterns']} patterns)", flush=True)
        print("  patch amplitude MAE / Pearson by radius (px): " + ", ".join(
            f"{b['r_from_px']}-{b['r_to_px']}: {b['amp_mae']:.3f}/{b['amp_pearson']:.2f}"
            for b in sc["patch_error_by_radius"]), flush=True)
    return out


def throughput(variants: list[str], repeats: int = 3, batch: int = 32) -> list[dict]:
    """Network-only inference patterns/s (forward pass, no physics) and MACs per pattern of each
    variant at N = 64 and 128, gridsize 1, both object supports. Noisy on a shared machine:
    compare within one call, and trust the MAC counts for the ratios."""
    rows = []
    for variant in variants:
        over = VARIANTS[variant]
        kw = {"arch": over.get("training.arch", "plain"), "norm": over.get("training.norm", "none"),
              "residual": over.get("training.residual", False),
              "width": over.get("training.width", 1),
              "spectral_blocks": over.get("training.spectral_blocks", 0)}
        for n in (64, 128):
            for support in ("central", "full"):
                cfg = NetworkConfig(N=n, amp_ref=1.0, object_support=support, **kw)
                torch.manual_seed(0)
                net = PtychoNet(cfg).eval()
                x = torch.rand(batch, 1, n, n)
                with torch.no_grad():
                    net(x)
                    t0 = time.perf_counter()
                    for _ in range(repeats):
                        net(x)
                    pps = repeats * batch / (time.perf_counter() - t0)
                rows.append({"variant": variant, "N": n, "object_support": support,
                             **network_macs(cfg), "inference_patterns_per_second": pps,
                             "batch": batch, "threads": torch.get_num_threads()})
                print(f"{variant} N={n} {support}: {rows[-1]['macs_per_pattern'] / 1e6:.0f} "
                      f"MMAC/pattern, {pps:.1f} patterns/s", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="gs2_ideal")
    ap.add_argument("--variants", nargs="+", default=["plain"], choices=sorted(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--base-total-images", type=int, default=500)
    ap.add_argument("--group-count", type=int, default=500)
    ap.add_argument("--nepochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--lr-schedule", default="plateau", choices=["plateau", "cosine"])
    ap.add_argument("--early-stopping", type=int, default=None,
                    help="patience in epochs on the validation loss (Poisson deviance)")
    ap.add_argument("--time-limit", type=float, default=None, help="training wall seconds per run")
    ap.add_argument("--train-dense-step", type=float, default=None,
                    help="extra raster scan of the training region at this step, px")
    ap.add_argument("--train-extra-positions", type=int, default=0)
    ap.add_argument("--corpus-count", type=int, default=0)
    ap.add_argument("--corpus-families", nargs="+", default=["lines", "grf", "siemens", "texture"])
    ap.add_argument("--corpus-patterns", type=int, default=512)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON",
                    help="extra config overrides, e.g. training.merge_warmup_epochs=1")
    ap.add_argument("--note", default="", help="machine note recorded with the results")
    ap.add_argument("--stages", nargs="+", type=int, default=[2, 5, 10])
    ap.add_argument("--no-refine", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="a")
    ap.add_argument("--workdir", default="/tmp/ptychotrace_study_network")
    ap.add_argument("--throughput", action="store_true", help="only measure network-only "
                    "inference speed and MACs of --variants (no training)")
    ap.add_argument("--score-splits", default=None, metavar="RUN_DIR",
                    help="only score this trained run network-only on the train and the test "
                    "split of the study's data (same flags): is the network underfitting the "
                    "object it trained on, or failing to generalise to the test region?")
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.score_splits:
        write_json(Path(args.output), score_splits(Path(args.score_splits), args))
        return 0
    if args.throughput:
        write_json(Path(args.output), {"machine": {**describe_machine(),
                                                   "load_average_start": os.getloadavg()},
                                       "command": " ".join(sys.argv),
                                       "throughput": throughput(args.variants,
                                                                batch=args.batch_size)})
        return 0
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    # The data follow the scenario plus any simulation.* / grouping.* overrides of --set (e.g.
    # simulation.nphotons=1e4 for a low-dose study), so test split and training corpus agree.
    cfg, _, _ = resolve_scenario(args.scenario, {
        "simulation.base_total_images": args.base_total_images,
        "grouping.group_count": args.group_count, **data_overrides(args.set)})
    ds, _ = simulate(cfg.simulation, scenario=args.scenario)
    out = Path(args.output)
    results = {"machine": {**describe_machine(), "load_average_start": os.getloadavg(),
                           "note": args.note},
               "args": vars(args), "command": " ".join(sys.argv), "runs": []}
    for seed in args.seeds:
        for variant in args.variants:
            results["runs"].append(run_one(args.scenario, variant, seed, args, ds, workdir, log))
            results["machine"]["load_average_end"] = os.getloadavg()
            write_json(out, results)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
