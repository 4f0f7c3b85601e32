"""Validated, frozen run configuration and the sim-lines scenario presets.

One ``RunConfig`` per run, built once by :func:`resolve_config` from (scenario defaults -> stable
profile, or a data file's :func:`dataset_base`, or a checkpoint's config -> file -> CLI
overrides), serialised whole into ``run_metadata.json``. No module-level mutable state.
Units: positions and sizes in pixels, doses in photons per pattern, phases in radians.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA_VERSION = "1.0"


class ProbeMode(StrEnum):
    ideal = "ideal"
    custom = "custom"


class MeasurementContract(StrEnum):
    """How network targets relate to the data (physics.md section 3).

    counts: physical (dose-scaled) probe, Poisson targets are raw counts; the object comes out
    in object units. legacy_v1: PtychoPINN normalised-amplitude files (X = sqrt(I)/s)."""

    counts = "counts"
    legacy_v1 = "legacy_v1"


class PredictionScaleSource(StrEnum):
    none = "none"
    recorded = "recorded"
    least_squares = "least_squares"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


class SimulationConfig(_Frozen):
    """Synthetic sim-lines data. N in pixels; nphotons = mean expected photons per pattern."""

    N: int = Field(64, description="patch = detector size, pixels")
    object_size: int = Field(392, ge=16, description="object side, pixels")
    object_seed: int = 42
    object_phase: Literal["zero", "tanh"] = "zero"
    sim_seed: int = 42
    probe_mode: ProbeMode = ProbeMode.ideal
    probe_file: Path | None = None
    probe_scale: float | None = Field(None, gt=0, description="None: 10 for ideal, 4 for custom")
    probe_mask: bool = Field(True, description="use the N//4 disk mask in probe normalisation")
    nphotons: float = Field(1e9, gt=0, description="mean expected photons per pattern")
    buffer: float = Field(10.0, ge=0, description="scan margin from the object edge, pixels")
    base_total_images: int = Field(2000, ge=2)
    image_multiplier: int = Field(1, ge=1, description="extra factor on the number of patterns")
    gridsize: int = Field(1, ge=1, le=4)
    split_fraction: float = Field(0.5, gt=0, lt=1)
    scan: Literal["random", "grid"] = "random"
    grid_step: float = Field(8.0, gt=0, description="raster step for scan='grid', pixels")
    poisson_noise: bool = True

    @field_validator("N")
    @classmethod
    def _check_n(cls, v: int) -> int:
        if v < 8 or v % 8 or v > 512:
            raise ValueError("N must be a multiple of 8 between 8 and 512 (64, 128, 256 for the "
                             "reference scenarios)")
        return v

    @model_validator(mode="after")
    def _check_geometry(self):
        if 2 * self.buffer >= self.object_size:
            raise ValueError(f"buffer {self.buffer} px leaves no scan area in a "
                             f"{self.object_size} px object")
        return self

    @property
    def resolved_probe_scale(self) -> float:
        if self.probe_scale is not None:
            return self.probe_scale
        return 10.0 if self.probe_mode == ProbeMode.ideal else 4.0

    @property
    def total_images(self) -> int:
        """total_images = base_total_images * gridsize^2 * image_multiplier."""
        return self.base_total_images * self.gridsize**2 * self.image_multiplier

    @property
    def test_count(self) -> int:
        return int(round(self.total_images * self.split_fraction))

    @property
    def train_count(self) -> int:
        return self.total_images - self.test_count


class GroupingConfig(_Frozen):
    group_count: int = Field(1000, ge=1, description="groups per split (capped at the split size)")
    group_multiplier: int = Field(1, ge=1)
    neighbor_count: int = Field(4, ge=1, description="K nearest neighbours to choose a group from")
    group_seed: int = 42
    group_method: Literal["knn", "raster_blocks"] = Field(
        "knn", description="gridsize > 1: 'knn' = a seed point and C-1 of its K nearest "
        "neighbours (physics.md section 4); 'raster_blocks' = g x g blocks of adjacent points of "
        "a raster scan, one fixed geometry (the reference PINN's gridsize-2 data)")
    block_step_px: float | None = Field(None, gt=0, description="raster_blocks: distance between "
                                        "a block's points, pixels (None: the raster's spacing)")
    block_stride: int = Field(1, ge=1, description="raster_blocks: block origins every k-th "
                              "raster point in x and y (1: every point, blocks overlap)")

    @property
    def requested_groups(self) -> int:
        return self.group_count * self.group_multiplier


class LossWeights(_Frozen):
    nll: float = Field(1.0, ge=0, description="Poisson NLL on counts")
    mae: float = Field(0.0, ge=0, description="MAE between predicted and measured amplitudes")
    realspace: float = Field(0.0, ge=0, description="supervised real-space term (needs labels)")


class TrainingConfig(_Frozen):
    nepochs: int = Field(5, ge=1, description="training epochs")
    batch_size: int = Field(16, ge=1, description="groups per optimizer step (per process under "
                            "DDP)")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    lr_plateau_factor: float = Field(0.5, gt=0, lt=1)
    lr_plateau_patience: int = Field(2, ge=0)
    lr_floor: float = Field(1e-4, gt=0)
    early_stopping_patience: int | None = Field(None, ge=1)
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    width: int = Field(1, ge=1, le=8, description="filter multiplier of the reference widths")
    seed: int = Field(42, description="training seed (weights, batches, validation split)")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N, mps")
    loss_weights: LossWeights = LossWeights()
    contract: MeasurementContract = MeasurementContract.counts
    object_support: Literal["auto", "full", "central"] = Field(
        "auto", description="'central' confines the predicted object to the central N/2 region; "
        "'auto' picks central when the probe has < 0.1% of its energy outside it, else full")
    time_limit_s: float | None = Field(None, gt=0, description="stop training after the epoch that "
                                       "crosses this wall time (seconds)")
    merge_warmup_epochs: int = Field(5, ge=0, description="gridsize > 1: first epochs apply the "
                                     "physics per pattern (no group merge), so the network leaves "
                                     "the flat-object start before the merge couples the channels; "
                                     "at most half of nepochs")
    merge_warmup_max_steps: int | None = Field(
        250, ge=0, description="gridsize > 1: the warm-up also ends after this many optimiser "
        "steps (None = epochs only), so that a large training set does not spend whole epochs "
        "per pattern (measured: 18 min at SSIM 0.34 with 4000 groups, docs/benchmarks.md)")
    # -- issue #12: network variants, schedule, collapse guard (see docs/benchmarks.md) --
    arch: Literal["plain", "unet"] = Field("plain", description="network: 'plain' encoder -> "
                                           "decoders, or 'unet' (encoder skips into the decoders)")
    norm: Literal["none", "group"] = Field("none", description="GroupNorm after each hidden conv")
    residual: bool = Field(False, description="residual conv blocks")
    input_transform: Literal["amplitude", "log", "backprop"] = Field(
        "amplitude", description="network input: 'amplitude' X = sqrt(counts) * gain; 'log' "
        "log1p(X / X_1photon) / log1p(1 / X_1photon) (compresses the detector's dynamic range); "
        "'backprop' X plus the one-step object estimate (measured amplitudes with a flat "
        "object's far-field phase, propagated back and divided by the probe), which puts the "
        "input in the object frame and units")
    unrolled_stages: int = Field(0, ge=0, le=4, description="with input_transform 'backprop': "
                                 "further encoder-decoders, each after a per-pattern data-"
                                 "consistency step on the previous prediction (measured far-field "
                                 "amplitudes, its own phase); one fixed forward pass")
    spectral_blocks: int = Field(0, ge=0, le=8, description="Fourier (FNO-style) blocks at the "
                                 "network's bottleneck: a global receptive field in one layer")
    position_channels: bool = Field(False, description="gridsize > 1: the network also sees "
                                    "each pattern's offset from its group centre (two constant "
                                    "planes per pattern), i.e. the group's geometry")
    precision: Literal["float32", "bfloat16"] = Field(
        "float32", description="hidden-layer compute precision: 'bfloat16' is autocast mixed "
        "precision (heads and physics stay float32), 3.6-4.2x faster training on CPUs with "
        "AMX/AVX512-BF16 and on GPUs, emulated and 10-13x slower elsewhere (training warns); "
        "recorded in the checkpoint and used by infer (see inference.precision)")
    lr_schedule: Literal["plateau", "cosine"] = Field(
        "plateau", description="'plateau': ReduceLROnPlateau on the monitored loss; 'cosine': "
        "cosine decay from lr to lr_floor over nepochs (per epoch)")
    collapse_guard: bool = Field(True, description="stop a collapse to a flat amplitude: warn, "
                                 "record, reload the best checkpoint and lower the lr")
    collapse_ratio: float = Field(0.05, gt=0, lt=1, description="collapse when the predicted "
                                  "amplitude's std/mean on the fixed validation batch falls below "
                                  "this fraction of its largest value in earlier epochs")
    collapse_lr_factor: float = Field(0.3, gt=0, lt=1, description="lr multiplier on recovery")
    collapse_max_recoveries: int = Field(2, ge=0, description="recoveries before training stops "
                                         "with status 'collapsed'")

    @model_validator(mode="after")
    def _check_unrolled(self):
        if self.unrolled_stages and self.input_transform != "backprop":
            raise ValueError(f"training.unrolled_stages {self.unrolled_stages} needs "
                             "training.input_transform 'backprop' (the data-consistency step "
                             "uses the probe and the measured amplitudes); add "
                             "--input-transform backprop")
        return self


class InferenceConfig(_Frozen):
    group_limit: int | None = Field(None, ge=1, description="cap on test groups used")
    stitch_window: int = Field(20, ge=1, description="central M x M kept per patch, pixels")
    stitch_weights: Literal["uniform", "consistency"] = Field(
        "uniform", description="weights inside the stitch window: uniform (the spec's average) "
        "or consistency (inverse error variance by radius from the patch centre, estimated "
        "without ground truth from overlapping patches; infer/stitch_weights.py)")
    batch_size: int = Field(64, ge=1)
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="the network's compute precision at inference: 'auto' = the model's "
        "training precision, except a bfloat16 model on a CPU without native bfloat16 runs in "
        "float32 (emulated bfloat16 is 5-7x slower there; model/precision.py); recorded in "
        "stats.json 'prediction.precision'")
    twin_fix: bool = Field(True, description="gridsize 1, twin-symmetric probe: choose each patch "
                           "or its twin so that overlapping neighbours agree (infer/predict.py)")
    refine_steps: int = Field(50, ge=0, description="physics refinement steps of the stitched "
                              "object on the test counts (0 = off; see docs/benchmarks.md)")
    refine_method: Literal["adam", "lsqml"] = Field(
        "adam", description="'adam': Adam steps of the Poisson NLL on the object canvas "
        "(refine_lr, refine_backoffs); 'lsqml': the baseline's solver (LSQ-ML with its "
        "preconditioner and damping) started from the network's stitched object, at most "
        "refine_steps iterations. Measured (docs/benchmarks.md, 'Refinement'): lsqml is "
        "0.02-0.04 SSIM better and 2-3x faster at 1e9 photons, level at 1e4, 0.08 worse at 1e3")
    refine_lr: float = Field(0.02, gt=0, description="refinement Adam step, relative to amp_ref "
                             "(refine_method 'adam' only)")
    refine_holdout: float = Field(0.1, ge=0, lt=1, description="fraction of every pixel's photons "
                                  "held out (binomial thinning) to stop the refinement before it "
                                  "fits shot noise and return its best iterate (0 = off; integer "
                                  "counts only; see docs/physics.md)")
    refine_patience: int | None = Field(10, ge=1, description="stop the refinement after this "
                                        "many steps without hold-out improvement (None = never)")
    refine_backoffs: int = Field(2, ge=0, description="with the hold-out: instead of stopping, "
                                 "return to the best iterate and go on with a 4x smaller step, "
                                 "at most this many times (0 = stop at once; refine_method "
                                 "'adam' only)")
    refine_smooth: bool = Field(True, description="with the hold-out: Gaussian low-pass of the "
                                "refined object, width chosen by the held-out deviance (0 at high "
                                "dose)")
    refine_refit: bool = Field(True, description="with the hold-out: redo the chosen number of "
                               "steps on all photons (no photons lost; twice the refinement time)")


class EvaluationConfig(_Frozen):
    prediction_scale_source: PredictionScaleSource = PredictionScaleSource.none
    register_subpixel: bool = True
    phase_ramp: bool = False
    amp_vmax: float | None = Field(None, gt=0, description="display max for amplitude PNGs")


class BaselineConfig(_Frozen):
    """The iterative baseline (baseline/solver.py; docs/baseline.md): ``ptychotrace baseline``
    and ``sweep --with-baseline``. Its stitch window (the covered region) is
    ``inference.stitch_window``, as the PINN's."""

    algorithm: Literal["lsqml", "rpie", "cdtools"] = Field(
        "lsqml", description="LSQ-ML or rPIE on ptychotrace's forward model; cdtools with the "
        "optional 'baseline' extra")
    iterations: int | None = Field(None, ge=1, description="maximum iterations (epochs); None: "
                                   "the algorithm's default (lsqml 100, rpie 40, cdtools 100)")
    likelihood: Literal["amplitude", "poisson"] = Field(
        "amplitude", description="fit cost: amplitude (Gaussian on sqrt counts) or Poisson")
    split: Literal["test", "train", "all"] = Field("test", description="patterns reconstructed")
    group_limit: int | None = Field(None, ge=1, description="use only the first K patterns of "
                                    "the split (dataset order)")
    holdout: float = Field(0.1, ge=0, lt=1, description="fraction of the photons held out for "
                           "early stopping (0 = off)")
    patience: int | None = Field(10, ge=1, description="stop after this many iterations without "
                                 "hold-out improvement (None = never)")
    damping_photons: float = Field(2.0, ge=0, description="LSQ-ML step damping floor in "
                                   "photons of summed illumination (0 = none; docs/baseline.md; "
                                   "baseline.solver.LSQ_DAMPING_PHOTONS)")
    damping: float = Field(0.0, ge=0, description="LSQ-ML relative preconditioner damping, "
                           "pty-chi's form (0 = none; baseline.solver.LSQ_DAMPING)")
    smooth: bool = Field(False, description="Gaussian low-pass of the result, width chosen by "
                         "the held-out deviance (the PINN refinement's rule; off: the plain "
                         "algorithm)")
    seed: int | None = Field(None, description="seed of the photon hold-out and the rPIE order; "
                             "None: training.seed")


#: Object families of the training corpus (physics/objects.py, data/corpus.py).
CorpusFamily = Literal["lines", "grf", "siemens", "texture"]


class CorpusConfig(_Frozen):
    """Extra training data (issue #12; data/corpus.py, docs/datasets.md). Off by default.

    Every pattern is simulated with the scenario's physical probe (same dose scale, derived from
    the scenario's training split), so the scale chain is that of the test scan. Sizes in pixels."""

    families: tuple[CorpusFamily, ...] = Field((), description="object families, cycled over "
                                               "`count` objects (empty = no corpus objects)")
    count: int = Field(0, ge=0, description="number of corpus objects")
    patterns_per_object: int = Field(512, ge=1, description="random scan positions per object")
    object_size: int | None = Field(None, ge=16, description="corpus object side (None = the "
                                    "scenario's object_size)")
    seed: int = Field(1000, ge=0, description="corpus seed (objects, positions, noise)")
    phase_max_rad: float = Field(1.0, ge=0, description="peak |phase| of non-lines families, rad")
    textures: tuple[str, ...] = Field(("camera", "brick", "grass", "gravel", "moon", "coins"),
                                      description="skimage.data images for the 'texture' family")
    train_dense_step: float | None = Field(None, gt=0, description="extra raster scan of the "
                                           "training object's training region at this step, px")
    train_extra_positions: int = Field(0, ge=0, description="extra random positions on the "
                                       "training object's training region")
    include_scenario_train: bool = Field(True, description="keep the scenario's own training split")

    @property
    def enabled(self) -> bool:
        return bool(self.count and self.families) or self.train_dense_step is not None \
            or self.train_extra_positions > 0

    @model_validator(mode="after")
    def _check(self):
        if self.count and not self.families:
            raise ValueError(f"corpus.count {self.count} needs corpus.families")
        if not self.textures:
            raise ValueError("corpus.textures must name at least one skimage.data image")
        return self


class DataConfig(_Frozen):
    """How a data file was loaded (``--data`` and the data-file flags of ``inspect``, ``train``,
    ``run``, ``infer``, ``baseline``; ptychotrace.io, docs/datasets.md). The defaults prepare
    nothing: the file as it is. ``train`` and ``run`` record it in their saved config, and
    ``--config`` with this section repeats the load (flags override it). Detector sizes in
    detector pixels, lengths in metres, energies in eV, counts in photons."""

    path: str | None = Field(None, description="the data file loaded (provenance: recorded from "
                             "--data; --data decides which file is read)")
    format: Literal["auto", "npz", "cxi", "ptychodus"] = Field(
        "auto", description="file format (auto: from the content)")
    measurement_domain: Literal["counts", "amplitude"] | None = Field(
        None, description="NPZ without metadata: diff3d holds photon counts or amplitudes "
        "sqrt(counts) (None: from the file)")
    dose_normalised: bool | None = Field(None, description="legacy_v1 NPZ: diff3d is divided by "
                                         "the dose scale (None: from the file)")
    dose_scale: float | None = Field(None, gt=0, description="dose scale s of legacy_v1 files "
                                     "(diff3d = sqrt(counts) / s)")
    product: str | None = Field(None, description="ptychodus product file (None: product.h5 "
                                "beside diffraction.h5)")
    cxi_translation_sign: Literal[1, -1] = Field(
        1, description="+1: CXI translation = probe position on the sample; -1: it is the "
        "sample stage displacement (probe position = -translation)")
    photon_energy_eV: float | None = Field(None, gt=0, description="photon energy the file "
                                           "lacks, eV (a conflict with the file is an error)")
    detector_distance_m: float | None = Field(None, gt=0, description="detector distance the "
                                              "file lacks, m")
    detector_pixel_size_m: float | None = Field(None, gt=0, description="detector pixel side "
                                                "the file lacks, m")
    crop_N: int | None = Field(None, ge=8, description="crop the detector to N x N detector "
                               "pixels (after binning) around the beam centre (None: no crop)")
    beam_centre_px: tuple[float, float] | None = Field(
        None, description="(row, col) beam centre, detector pixels (None: centroid of the mean "
        "pattern)")
    bin_factor: int = Field(1, ge=1, description="integer detector binning factor (counts "
                            "summed, masks combined; 1 = none)")
    saturation_count: float | None = Field(None, gt=0, description="pixels above this count "
                                           "(photons) in any pattern are masked (None: none)")
    probe_scaling: Literal["auto", "measured", "physical"] = Field(
        "auto", description="probe from the file: rescaled to the measured photons, or taken as "
        "physical sqrt(photons) (auto: physical only if the file says so)")
    test_fraction: float = Field(0.5, gt=0, lt=1, description="files without a split: the upper "
                                 "fraction in y is the test split")


class RunConfig(_Frozen):
    schema_version: str = SCHEMA_VERSION
    scenario: str = "custom"
    simulation: SimulationConfig = SimulationConfig()
    grouping: GroupingConfig = GroupingConfig()
    training: TrainingConfig = TrainingConfig()
    inference: InferenceConfig = InferenceConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    baseline: BaselineConfig = BaselineConfig()
    corpus: CorpusConfig = CorpusConfig()
    data: DataConfig = DataConfig()

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    @model_validator(mode="after")
    def _check_counts(self):
        sim, grp = self.simulation, self.grouping
        c = sim.gridsize**2
        if min(sim.train_count, sim.test_count) < c:
            raise ValueError(f"a split has fewer than C={c} patterns (train {sim.train_count}, "
                             f"test {sim.test_count})")
        if grp.group_method == "knn" and (grp.block_step_px is not None or grp.block_stride != 1):
            raise ValueError("grouping.block_step_px and grouping.block_stride apply to "
                             "group_method 'raster_blocks' only; set --group-method raster_blocks "
                             "or drop them")
        if sim.gridsize > 1 and grp.group_method == "knn" and grp.neighbor_count < c:
            raise ValueError(f"neighbor_count {grp.neighbor_count} must be >= C = {c}")
        if self.training.position_channels and sim.gridsize < 2:
            raise ValueError("training.position_channels needs simulation.gridsize > 1 (a "
                             "gridsize-1 group is one pattern at offset 0)")
        return self


# --------------------------------------------------------------------------------------------
# Scenarios and stable profiles
# --------------------------------------------------------------------------------------------
#: Shared sim-lines values (physics.md section 5), as dotted config paths.
_SHARED = {
    "simulation.N": 64, "simulation.object_size": 392, "simulation.object_seed": 42,
    "simulation.sim_seed": 42, "simulation.buffer": 10.0, "simulation.split_fraction": 0.5,
    "simulation.base_total_images": 2000, "grouping.group_count": 1000,
    "simulation.nphotons": 1e9, "grouping.neighbor_count": 4, "inference.stitch_window": 20,
}

SCENARIOS: dict[str, dict[str, Any]] = {
    "gs1_ideal": {"simulation.gridsize": 1, "simulation.probe_mode": "ideal",
                  "simulation.probe_scale": 10.0},
    "gs2_ideal": {"simulation.gridsize": 2, "simulation.probe_mode": "ideal",
                  "simulation.probe_scale": 10.0},
    "gs1_custom": {"simulation.gridsize": 1, "simulation.probe_mode": "custom",
                   "simulation.probe_scale": 4.0},
    "gs2_custom": {"simulation.gridsize": 2, "simulation.probe_mode": "custom",
                   "simulation.probe_scale": 4.0},
}

#: Stable profiles: applied unless the matching value is given explicitly.
PROFILES: dict[str, dict[str, Any]] = {
    "gs1_ideal": {"simulation.base_total_images": 512, "grouping.group_count": 256,
                  "training.batch_size": 8},
    "gs2_ideal": {"simulation.base_total_images": 256, "grouping.group_count": 128,
                  "training.batch_size": 4, "grouping.neighbor_count": 4},
}


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the field."""


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "loss_weights":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file of nested settings -> flat dotted dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: config must be .yaml, .yml, .toml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # parser errors carry line numbers; keep them
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return _flatten(data)


def resolve_scenario(scenario: str, overrides: dict[str, Any] | None = None,
                     file_values: dict[str, Any] | None = None,
                     use_profile: bool = True) -> tuple[RunConfig, dict[str, Any], list[str]]:
    """Build the run configuration for a named scenario.

    Precedence: shared defaults < scenario < stable profile < config file < CLI overrides.
    A profiled value that the file or CLI changes is *skipped* and reported with a warning.
    Returns (config, profile record for run_metadata, warnings).
    """
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}; choose from {sorted(SCENARIOS)}")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    file_values = dict(file_values or {})
    explicit = {**file_values, **overrides}
    profile = PROFILES.get(scenario, {}) if use_profile else {}
    applied, skipped, warnings = {}, {}, []
    for key, preferred in profile.items():
        if key in explicit and explicit[key] != preferred:
            skipped[key] = {"preferred": preferred, "override": explicit[key],
                            "reason": "explicit value given (CLI flag or config file)"}
            warnings.append(f"stable profile '{scenario}': {key}={preferred} overridden by "
                            f"{explicit[key]}; results may differ from the reference profile")
        else:
            applied[key] = preferred
    flat = {**_SHARED, **SCENARIOS[scenario], **applied, **explicit, "scenario": scenario}
    try:
        config = RunConfig.model_validate(_nest(flat))
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc)) from exc
    record = {"name": scenario if profile else None, "defaults": profile, "applied": applied,
              "skipped": skipped, "active": bool(profile)}
    return config, record, warnings


def resolve_config(base: dict[str, Any] | RunConfig | None = None, *, scenario: str | None = None,
                   file_values: dict[str, Any] | None = None,
                   overrides: dict[str, Any] | None = None,
                   use_profile: bool = True) -> tuple[RunConfig, dict[str, Any], list[str]]:
    """The one resolve function: (a named scenario, or a base configuration such as a
    checkpoint's saved config or one derived from a dataset) < config file < CLI flags.

    With ``scenario``: :func:`resolve_scenario` (shared defaults < scenario < stable profile <
    file < flags). With ``base`` (a RunConfig dict or model): its values < file < flags; fields
    added to RunConfig since ``base`` was saved take their defaults. ``overrides`` are dotted
    paths (None values ignored). Returns (config, profile record, warnings).
    """
    if scenario is not None:
        return resolve_scenario(scenario, overrides, file_values, use_profile)
    import copy

    if isinstance(base, RunConfig):
        base = base.to_dict()
    flat = _flatten(copy.deepcopy(base or {}))
    flat.update(file_values or {})
    flat.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        config = RunConfig.model_validate(_nest(flat))
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc)) from exc
    record = {"name": None, "defaults": {}, "applied": {}, "skipped": {}, "active": False}
    return config, record, []


def dataset_base(metadata: dict[str, Any] | None, n: int) -> dict[str, Any]:
    """:func:`resolve_config`'s ``base`` for a run on a data file (``run --data`` without a
    scenario, and ``train --data``): the field defaults, the simulation settings the file records
    (``metadata.simulation``: how it was made, e.g. its gridsize, which infer's compatibility
    check reads too) and N from the data (px); scenario 'data'. The sim-lines presets and stable
    profiles apply to simulations only."""
    recorded = (metadata or {}).get("simulation")
    sim = {k: v for k, v in (recorded if isinstance(recorded, dict) else {}).items()
           if k in SimulationConfig.model_fields}
    return {"scenario": "data", "simulation": {**sim, "N": int(n)}}


def _describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)
