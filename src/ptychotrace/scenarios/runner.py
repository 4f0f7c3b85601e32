"""Run one scenario end to end and leave a run directory that explains itself.

Stages (each timed, each failure recorded with everything gathered before it):
simulate (or load ``--data``) -> group -> train -> infer -> compare. The artifact tree and every
field name follow docs/telemetry.md; see :func:`run_scenario`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PredictionScaleSource, RunConfig
from ..data.container import GroupedData, build_grouped, grouping_method_kwargs, truth_patches
from ..data.dataset import Dataset, file_sha256
from ..format import format_resolution, format_value
from ..model.precision import precision_note
from ..records.comparison import ChannelHeadline, ComparisonRecord
from ..simulate import simulate, split_stats
from ..stages.evaluate import activation_bound
from ..stages.prediction import evaluate_and_write
from ..telemetry.recorder import RunRecorder, collect_provenance, prepare_run_dir
from ..telemetry.scale_chain import intensity_scale_block, label_vs_truth, record_training_label_stats
from ..telemetry.stats import array_stats
from ..telemetry.writers import write_text
from .no_truth import stage_no_truth
from .no_truth import summary_lines as no_truth_summary

TRAIN_OUTPUTS = "train_outputs"
INFERENCE_OUTPUTS = "inference_outputs"
LOGS = "logs"


@dataclass
class RunRequest:
    """Everything one run needs. ``faults`` exists for tests only (e.g. ``{"label_scale": 2.0}``
    multiplies the recorded amplitude labels, ``{"fail_stage": "infer"}`` raises in that stage)."""

    config: RunConfig
    output_dir: Path
    profile: dict[str, Any] = field(default_factory=dict)
    cli_args: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    data_path: Path | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    progress: bool = True
    dataset: Dataset | None = None        # an in-memory dataset (sweeps reuse one for the baseline);
    #                                       with data_path: that file as the command loaded it
    dataset_record: dict[str, Any] | None = None  # simulate()'s record for that dataset, if any
    faults: dict[str, Any] = field(default_factory=dict)


class _Log:
    """Print and append to logs/run.log."""

    def __init__(self, path: Path, echo: bool):
        self.path, self.echo = path, echo
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if self.echo:
            print(line, flush=True)


def _fault(req: RunRequest, stage: str) -> None:
    if req.faults.get("fail_stage") == stage:
        raise RuntimeError(f"injected failure in stage '{stage}' (test fault)")


def _amplitude_stage_meta(count: int, gridsize: int, group_limit: int | None, **extra) -> dict:
    return {"count": count, "gridsize": gridsize, "group_limit": group_limit,
            "domain": "amplitude", **extra}


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------
def _stage_data(req: RunRequest, rec: RunRecorder, log) -> Dataset:
    cfg = req.config
    if req.dataset is not None and req.data_path is None:
        ds = req.dataset
        record = _record_from_dataset(ds)
        record.update({k: v for k, v in (req.dataset_record or {}).items() if v is not None})
        source = {"type": "simulated" if req.dataset_record else "in_memory", "path": None,
                  "sha256": None, "note": "dataset handed over in memory (e.g. by a sweep)"}
    elif req.data_path is not None:
        from ..io import Geometry, LoadOptions, load_data

        if req.dataset is not None:   # loaded from data_path by the command (commands.common)
            ds = req.dataset
            geom = Geometry.model_validate(ds.metadata["geometry"])
        else:
            ds, geom = load_data(req.data_path, LoadOptions(**req.data_options))
        record = None
        source = {"type": f"{geom.source_format}_file", "path": str(req.data_path),
                  "sha256": file_sha256(req.data_path)}
        rec.set_block("geometry", geom.to_dict())   # positions converted once, at load
        log(f"loaded {req.data_path} ({geom.source_format}): {ds.n_patterns} patterns of "
            f"{ds.patch_size}x{ds.patch_size}; object pixel {geom.object_pixel_width_m} m; "
            f"{100 * ds.masked_fraction:.3g}% of detector pixels masked")
    else:
        log(f"simulating {cfg.scenario}: {cfg.simulation.total_images} patterns at "
            f"{cfg.simulation.nphotons:.3g} photons/pattern")
        ds, record = simulate(cfg.simulation, scenario=cfg.scenario)
        source = {"type": "simulated", "path": None, "sha256": None}
    if ds.patch_size != cfg.simulation.N:
        raise ValueError(f"dataset patterns are {ds.patch_size} px but N={cfg.simulation.N}; "
                         "pass --N to match the data")
    if ds.obj is None:
        log("no ground truth in the data: the compare stage records the reconstruction, probe, "
            "scan and data consistency instead")
    rec.set_block("provenance", collect_provenance(
        {"object_seed": cfg.simulation.object_seed, "sim_seed": cfg.simulation.sim_seed,
         "training_seed": cfg.training.seed, "group_seed": cfg.grouping.group_seed}, source))
    if record is None:
        record = _record_from_dataset(ds)
    for key in ("probe", "dataset_scale_info", "split_intensity_stats"):
        rec.set_block(key, record[key])
    rec.set_block("measured_photons_per_pattern", record["measured_photons_per_pattern"])
    rec.add_intensity_stage("raw_diffraction", "dataset: sqrt(counts), all patterns",
                            np.sqrt(ds.counts), _amplitude_stage_meta(ds.n_patterns, 1, None))
    return ds


def _record_from_dataset(ds: Dataset) -> dict:
    """The probe/dose blocks for a dataset that was not simulated in this run."""
    from ..physics.probe import amplitude_stats
    from ..physics.scaling import closed_form_dose_scale

    n = ds.patch_size
    s = ds.dose_scale
    mode = (ds.metadata.get("dose") or {}).get("mode") or ("dataset" if s else "unknown")
    sums = ds.counts.reshape(ds.n_patterns, -1).sum(axis=1, dtype=np.float64)
    nphotons = float(ds.metadata.get("nphotons") or sums[ds.split == 0].mean())
    unit = sums / (s * s) if s else sums
    train = ds.indices("train")
    return {
        "probe": {"source": "dataset probeGuess", "shape": list(ds.probe.shape),
                  "physical": amplitude_stats(ds.probe),
                  "physical_energy_photons": float(np.sum(np.abs(ds.probe) ** 2)),
                  "pre_normalisation": None, "post_normalisation": None,
                  "note": "probe normalisation happened before the file was written",
                  # real data: the probe's rescaling to sqrt(photons) at load (ptychotrace.io)
                  "scale_at_load": (ds.metadata.get("geometry") or {}).get("probe_scaling")},
        "dataset_scale_info": {
            "N": n, "nphotons": nphotons,
            "batch_mean_sum_intensity": float(unit[train].mean()) if s else None,
            "dataset_scale": s, "fallback_scale": closed_form_dose_scale(nphotons, n),
            "ratio": (s / closed_form_dose_scale(nphotons, n)) if s else None, "used_mode": mode,
            "derived_from": "dataset metadata; batch mean re-measured from counts / s^2"},
        "split_intensity_stats": split_stats(unit, ds.split, nphotons),
        "measured_photons_per_pattern": {
            "all": float(sums.mean()), "train": float(sums[train].mean()) if len(train) else None,
            "test": float(sums[ds.indices("test")].mean()) if len(ds.indices("test")) else None,
            "units": "photons (summed counts)"},
    }


def _counts_block(cfg: RunConfig, ds: Dataset, train_groups: int, test_groups: int,
                  group_limit: int | None) -> dict:
    return {"total_images": ds.n_patterns, "train_count": int(len(ds.indices("train"))),
            "test_count": int(len(ds.indices("test"))),
            "group_count": cfg.grouping.requested_groups, "train_groups": train_groups,
            "test_groups": test_groups, "group_limit": group_limit,
            "gridsize": cfg.simulation.gridsize, "N": ds.patch_size,
            "nphotons": cfg.simulation.nphotons}


def _stage_group(req: RunRequest, rec: RunRecorder, ds: Dataset, log):
    from ..train.trainer import prepare_training_data

    cfg = req.config
    data = prepare_training_data(cfg, ds)
    full = data.train if data.val is None else _concat(data.train, data.val)
    g = cfg.simulation.gridsize
    rec.add_intensity_stage("grouped_diffraction", "train split, grouped: sqrt(counts)",
                            np.sqrt(full.counts), _amplitude_stage_meta(len(full), g, None))
    rec.add_intensity_stage("grouped_X_full", "train split, grouped: X = sqrt(counts) * input_gain",
                            full.X, _amplitude_stage_meta(len(full), g, None,
                                                          input_gain=data.input_gain))
    rec.add_intensity_stage("container_X", "training container X (validation groups removed)",
                            data.train.X, _amplitude_stage_meta(len(data.train), g, None))

    label_scale = float(req.faults.get("label_scale", 1.0))
    arrays, missing = _label_arrays(data.train, label_scale)
    labels = record_training_label_stats(arrays, missing)
    if label_scale != 1.0:
        labels["fault_injection"] = {"label_scale": label_scale}
    rec.set_block("training_labels", labels)
    if arrays.get("Y_amp") is not None:
        rec.add_intensity_stage("training_labels_Y_amp", "training container Y_amp",
                                arrays["Y_amp"], {"count": len(data.train), "gridsize": g,
                                                  "group_limit": None, "domain": "object_amplitude"})
        rec.add_intensity_stage("training_labels_Y_I", "training container Y_I = Y_amp^2",
                                arrays["Y_I"], {"count": len(data.train), "gridsize": g,
                                                "group_limit": None, "domain": "object_intensity"})
    if ds.obj is None:
        rec.set_block("label_vs_truth_analysis", {"verdict": None, "reason": "no ground truth"})
        return data
    # Ground truth over the same region the labels came from, cut independently of the labels.
    xs, ys = data.train.xcoords.ravel(), data.train.ycoords.ravel()
    truth_same_region = float(np.abs(truth_patches(ds.obj, xs, ys, ds.patch_size)).mean(
        dtype=np.float64))
    lvt = label_vs_truth(labels, truth_same_region)
    lvt["region"] = "the training container's patches (same positions and extractor as the labels)"
    rec.set_block("label_vs_truth_analysis", lvt)
    log(f"grouped: {len(data.train)} training groups, {0 if data.val is None else len(data.val)} "
        f"validation groups; input gain {data.input_gain:.4g}; labels vs truth: {lvt.get('verdict')}")
    return data


def _concat(a: GroupedData, b: GroupedData) -> GroupedData:
    def cat(x, y):
        return None if x is None else np.concatenate([x, y])

    return GroupedData(cat(a.X, b.X), cat(a.counts, b.counts), cat(a.xcoords, b.xcoords),
                       cat(a.ycoords, b.ycoords), cat(a.dx, b.dx), cat(a.dy, b.dy),
                       cat(a.pattern_index, b.pattern_index), cat(a.Y_amp, b.Y_amp),
                       cat(a.Y_phi, b.Y_phi), a.gridsize, a.input_gain, a.split)


def _label_arrays(train: GroupedData, label_scale: float) -> tuple[dict, dict]:
    missing: dict[str, str] = {}
    if train.Y_amp is None:
        for k in ("Y_amp", "Y_I", "Y_phi", "Y"):
            missing[k] = "dataset has no ground truth object"
        return {"X": train.X}, missing
    y_amp = train.Y_amp * np.float32(label_scale)
    return {"X": train.X, "Y_amp": y_amp, "Y_I": np.square(y_amp), "Y_phi": train.Y_phi,
            "Y": (y_amp * np.exp(1j * train.Y_phi)).astype(np.complex64)}, missing


def _stage_train(req: RunRequest, rec: RunRecorder, ds: Dataset, data, log):
    from ..train.checkpoint import load_model
    from ..train.trainer import forward_pass_diagnostics, train

    cfg = req.config
    result = train(cfg, ds, req.output_dir, progress=req.progress, log=log)
    block = result.to_dict()
    rec.set_block("training", block)
    ckpt = result.best_checkpoint or result.last_checkpoint
    model = load_model(ckpt)
    truth_mean = float(np.mean(data.train.Y_amp, dtype=np.float64)) if data.train.Y_amp is not None \
        else None
    diag = forward_pass_diagnostics(model, data.train.take(np.arange(min(len(data.train), 16))),
                                    truth_mean)
    rec.set_block("forward_pass_diagnostics", diag)
    for rel in (result.history_path, result.history_summary_path, result.best_checkpoint,
                result.last_checkpoint):
        if rel:
            rec.add_artifact(Path(rel).resolve().relative_to(req.output_dir.resolve()))
    log(f"trained {result.epochs_completed} epochs ({result.status}); final loss "
        f"{format_value(result.final_loss)}; {result.samples_per_second or 0:.1f} samples/s")
    return model, result


def _stage_infer(req: RunRequest, rec: RunRecorder, ds: Dataset, model, log):
    from ..infer.predict import predict_test_split

    cfg = req.config
    pred = predict_test_split(model, ds, cfg, group_limit=cfg.inference.group_limit)
    out = req.output_dir / INFERENCE_OUTPUTS
    out.mkdir(parents=True, exist_ok=True)
    amp = pred.amplitude.astype(np.float32)
    covered = pred.covered
    block = {
        "groups_available": pred.groups_available, "groups_used": pred.groups_used,
        "group_limit": cfg.inference.group_limit, "patterns_used": pred.patterns_used,
        "stitched_shape": list(amp.shape), "stitch_window": cfg.inference.stitch_window,
        "coverage_fraction": float(covered.mean()),
        "amplitude": array_stats(amp[covered], note="stitched amplitude, covered region"),
        "phase": array_stats(pred.phase[covered].astype(np.float32),
                             note="stitched phase (radians), covered region"),
        "patterns_per_second": pred.patterns_per_second, "seconds": pred.seconds,
        **({"post_processing": pred.info} if getattr(pred, "info", None) else {}),
        **({"precision": pred.precision} if getattr(pred, "precision", None) else {}),
    }
    rec.set_block("inference", block)
    log(f"inferred {pred.patterns_used} patterns ({pred.groups_used} groups) at "
        f"{pred.patterns_per_second:.1f} patterns/s; coverage {block['coverage_fraction']:.3f}")
    note = precision_note(getattr(pred, "precision", None))
    if note:
        log(note)
    return pred


def _stage_compare(req: RunRequest, rec: RunRecorder, ds: Dataset, model, pred, log
                   ) -> ComparisonRecord:
    """The one evaluation and the prediction's outputs (stages.prediction), recorded."""
    cfg, out = req.config, req.output_dir
    outputs = evaluate_and_write(model, pred, ds, cfg.evaluation, out, out / INFERENCE_OUTPUTS)
    cmp = outputs.comparison
    for a in outputs.artifacts:
        rec.add_artifact(a)
    rec.set_block("prediction_scale", cmp.prediction_scale.dump())
    region = outputs.region
    rec.add_intensity_stage("inference_prediction", "stitched amplitude on the evaluation region, "
                            "before any prediction scale", outputs.amplitude_unscaled[region],
                            {"count": pred.patterns_used, "gridsize": cfg.simulation.gridsize,
                             "group_limit": cfg.inference.group_limit, "domain": "object_amplitude"})
    rec.add_intensity_stage("ground_truth_amp", "ground truth amplitude on the evaluation region",
                            np.abs(ds.obj)[region].astype(np.float32),
                            {"count": int(region.sum()), "gridsize": None, "group_limit": None,
                             "domain": "object_amplitude"})
    rec.set_block("comparison", cmp.headline(coverage_fraction=float(pred.covered.mean())).dump())
    a, ls = cmp.amplitude, cmp.prediction_scale.least_squares
    net = cmp.network_only
    if net is not None:   # issue #12: the network alone, before refinement, same recipe
        nls = net.prediction_scale.least_squares
        rec.set_block("comparison_network_only", {
            "note": "the network's stitched object before refinement, same evaluation recipe",
            "amplitude": ChannelHeadline.of(net.amplitude).dump(),
            "phase": ChannelHeadline.of(net.phase).dump(),
            "least_squares_scale": nls.value if nls else None})
        log(f"compare (network only, before refinement): amplitude pearson "
            f"{format_value(net.amplitude.pearson_r)}, ssim {format_value(net.amplitude.ssim)}")
    log(f"compare: amplitude pearson {format_value(a.pearson_r)}, ssim {format_value(a.ssim)}, "
        f"bias mean {format_value(a.bias_summary.mean if a.bias_summary else None)}; "
        f"least-squares scale {format_value(ls.value if ls else None)}")
    return cmp


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------
def run_scenario(req: RunRequest) -> dict[str, Any]:
    """Run all stages; return the final run_metadata dict. Raises after recording a failure."""
    cfg = req.config
    out = Path(req.output_dir)
    backup = prepare_run_dir(out, force=req.force)
    out.mkdir(parents=True, exist_ok=True)
    req.output_dir = out
    log = _Log(out / LOGS / "run.log", echo=req.progress)
    if backup:
        log(f"--force: the previous contents were moved to {backup}")
    for w in req.warnings:
        log(f"warning: {w}")
    rec = RunRecorder(out, cfg.scenario)
    rec.add_artifact(f"{LOGS}/run.log")
    rec.set_block("config", cfg.to_dict())
    rec.set_block("cli_args", req.cli_args)
    rec.set_block("profile", req.profile)
    rec.set_block("warnings", list(req.warnings))

    with rec.stage("simulate"):
        _fault(req, "simulate")
        ds = _stage_data(req, rec, log)
    train_ds, manifest = ds, None  # issue #12: train on a corpus, infer/compare on ds's test split
    if cfg.corpus.enabled:
        with rec.stage("corpus"):
            from ..data.corpus import build_training_dataset

            train_ds, manifest = build_training_dataset(cfg, ds, out / "corpus_cache", log=log)
            rec.set_block("training_corpus", manifest.model_dump(mode="json"))
    with rec.stage("group"):
        _fault(req, "group")
        data = _stage_group(req, rec, train_ds, log)
        test_groups = build_grouped(ds, "test", cfg.simulation.gridsize,
                                    cfg.grouping.requested_groups, cfg.grouping.neighbor_count,
                                    cfg.grouping.group_seed, data.input_gain,
                                    **grouping_method_kwargs(cfg.grouping.model_dump()))
        rec.set_block("counts", _counts_block(cfg, ds, len(data.train) + (
            0 if data.val is None else len(data.val)), len(test_groups), cfg.inference.group_limit))
    with rec.stage("train"):
        _fault(req, "train")
        model, result = _stage_train(req, rec, train_ds, data, log)
        from ..train.model_card import write_card_for_training

        write_card_for_training(cfg, train_ds, result.to_dict(), out, req.data_path, manifest)
    with rec.stage("infer"):
        _fault(req, "infer")
        pred = _stage_infer(req, rec, ds, model, log)
    with rec.stage("compare"):
        _fault(req, "compare")
        cmp = (_stage_compare if ds.obj is not None else stage_no_truth)(req, rec, ds, model, pred, log)
        from ..evaluate.consistency_record import record_run_consistency
        record_run_consistency(rec, out, ds, pred, activation_bound(model))
        dsi = rec.get_block("dataset_scale_info") or {}
        used = dsi.get("dataset_scale") if dsi.get("used_mode") == "dataset" else dsi.get("fallback_scale")
        rec.write_intensity_stats(
            normalize_gain=data.input_gain,
            intensity_scale=intensity_scale_block(
                dsi.get("dataset_scale"), dsi.get("fallback_scale"), dsi.get("used_mode"),
                recorded_in_checkpoint=(result.scales.get("dose_scale") or {}).get("value"),
                model_value=model.dose_scale if model.dose_scale is not None else used))
        _write_summaries(req, rec, cmp, result)
    meta = rec.finalize()
    log(f"done: {out}/run_metadata.json (status {meta['status']})")
    return meta


def _fmt(x, digits: int = 4) -> str:
    return format_value(x, digits=digits, thousands=False)


def _write_summaries(req: RunRequest, rec: RunRecorder, cmp: ComparisonRecord, result) -> None:
    name = req.config.scenario
    out = req.output_dir
    if isinstance(cmp, dict):   # own data without a ground truth (scenarios/no_truth.py)
        lines = no_truth_summary(name, cmp, rec.get_block("data_consistency"))
    else:
        scale = cmp.prediction_scale
        lvt = rec.get_block("label_vs_truth_analysis") or {}
        lines = [f"# {name}: comparison summary", "",
                 "Covered region of the test split, object frame; metrics from comparison_metrics.json.",
                 "", "| channel | pearson_r | ssim | mae | rmse | bias mean | bias median | FRC 1/2-bit |",
                 "|---|---|---|---|---|---|---|---|"]
        for label, ch in (("amplitude", cmp.amplitude), ("phase (rad)", cmp.phase)):
            b = ch.bias_summary
            lines.append(f"| {label} | {_fmt(ch.pearson_r)} | {_fmt(ch.ssim)} | {_fmt(ch.mae)} | "
                         f"{_fmt(ch.rmse)} | {_fmt(b.mean if b else None)} | "
                         f"{_fmt(b.median if b else None)} | {format_resolution(ch.frc)} |")
        if cmp.network_only is not None:   # issue #12: the network alone, before the refinement
            na = cmp.network_only.amplitude
            lines.append(f"| amplitude, network only (before refinement) | {_fmt(na.pearson_r)} | "
                         f"{_fmt(na.ssim)} | {_fmt(na.mae)} | {_fmt(na.rmse)} | | | |")
        ls = scale.least_squares
        lines += ["", f"- coverage fraction: {_fmt(cmp.coverage_fraction)}",
                  f"- prediction scale: mode {scale.mode}, value {_fmt(scale.value)}, "
                  f"applied {scale.applied}; least-squares scale {_fmt(ls.value if ls else None)}",
                  f"- registration shift (px, y/x): {cmp.registration.shift_px}",
                  f"- labels vs truth: {lvt.get('verdict')}", ""]
    write_text(out / f"{name}_comparison_summary.md", "\n".join(lines))
    rec.add_artifact(f"{name}_comparison_summary.md")
    t = result.to_dict()
    tl = [f"# {name}: training summary", "",
          f"- status: {t.get('status')}; epochs completed {t.get('epochs_completed')}; early stopped "
          f"{t.get('early_stopped')}",
          f"- final loss {_fmt(t.get('final_loss'))}; final validation loss "
          f"{_fmt(t.get('final_val_loss'))}; best epoch {t.get('best_epoch')}",
          f"- NaN detected: {t.get('nan_detected')} (epoch {t.get('first_nan_epoch')}, step "
          f"{t.get('first_nan_step')})",
          f"- throughput: {_fmt(t.get('samples_per_second'))} samples/s on {t.get('device')}",
          f"- amplitude-collapse events: {len(t.get('collapse_events') or [])} "
          f"{[e.get('epoch') for e in t.get('collapse_events') or []]}",
          f"- loss weights: {req.config.training.loss_weights.model_dump()}",
          f"- history: {t.get('history_path')}", ""]
    write_text(out / f"{name}_training_summary.md", "\n".join(tl))
    rec.add_artifact(f"{name}_training_summary.md")


__all__ = ["RunRequest", "run_scenario", "PredictionScaleSource"]
