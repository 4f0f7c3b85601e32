"""comparison_metrics.json: a reconstruction against the ground truth (telemetry.md).

Written by the one evaluation (:func:`ptychotrace.stages.evaluate.evaluate`), read by the report,
the sweep, the analyzer and ``run_metadata.json``'s ``comparison`` headline block.
Amplitudes in object amplitude units, phases in radians, shifts and resolutions in pixels,
spatial frequencies in cycles per pixel.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer

from .base import Block, Record

COMPARISON_FILE = "comparison_metrics.json"
COMPARISON_SCHEMA = "1.1"   # 1.1: schema_version, frc.half_bit_crossed, typed record


class Stats(Block):
    """min, max, mean, std (population), median of the compared pixels."""

    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    median: float | None = None


class BiasSummary(Block):
    """Distribution of (prediction - truth) on the region."""

    mean: float | None
    median: float | None
    p05: float | None
    p95: float | None


class Psnr(Block):
    value: float | None
    peak: float | None
    peak_source: str | None = None


class FrcPoint(Block):
    spatial_frequency: float
    frc: float | None
    half_bit_threshold: float
    n_pixels: int


class Frc(Block):
    """Fourier ring correlation. ``half_bit_resolution`` is in pixels per cycle (lower is better);
    it is null when the curve never falls below the threshold (``half_bit_crossed`` False: the
    resolution is at least Nyquist, 2 px) or when the FRC is undefined (see ``note``)."""

    window: str | None = None
    curve: list[FrcPoint] = Field(default_factory=list)
    half_bit_crossing_frequency: float | None = None
    half_bit_resolution: float | None
    frc50_crossing_frequency: float | None = None
    frc50: float | None
    half_bit_crossed: bool | None = None
    frc50_crossed: bool | None = None
    box: list[int] | None = None       # row0, row1, col0, col1 of the region's bounding box
    shape: list[int] | None = None     # (h, w) of that box, px
    note: str | None = None            # why the FRC is undefined, when it is


class RegistrationShort(Block):
    shift_px: list[float] | None
    applied: bool


class Registration(RegistrationShort):
    """Sub-pixel registration of the prediction to the truth, (dy, dx) pixels."""

    min_shift_px: float | None = None
    convention: str | None = None
    mask_shift_px: list[int] = Field(default_factory=lambda: [0, 0])
    error: float | None = None
    max_shift_px: float | None = None
    note: str | None = None


class OutputRangeCheck(Block):
    bound: float
    relative_tolerance: float
    count: int
    fraction_at_bound: float | None
    applies_to: str | None = None


class ChannelMetrics(Block):
    """Metrics of one channel (amplitude or phase) on the evaluated region."""

    channel: Literal["amplitude", "phase"]
    count: int
    nonfinite_count: int = 0
    coverage_fraction: float
    mae: float | None
    rmse: float | None
    max_abs: float | None
    pearson_r: float | None
    ssim: float | None
    ssim_data_range: float | None = None
    ssim_win_size: int | None = None
    ssim_support: str | None = None
    ssim_pixels: int | None = None
    psnr: Psnr
    frc: Frc | None = None
    pred_stats: Stats | None
    truth_stats: Stats | None
    bias_summary: BiasSummary | None
    output_range_check: OutputRangeCheck | None = None
    registration: RegistrationShort | None = None


class CanvasChannel(Block):
    """Headline metrics of one channel on the full canvas (no mask)."""

    count: int
    mae: float | None
    rmse: float | None
    pearson_r: float | None
    ssim: float | None
    psnr: Psnr
    ssim_data_range: float | None = None


class FullCanvas(Block):
    coverage_fraction: float
    coverage_fraction_after_registration: float | None = None
    amplitude: CanvasChannel
    phase: CanvasChannel


class LeastSquares(Block):
    """sum(p t) / sum(p p) on the region (always computed, diagnostic)."""

    finite_count: int
    numerator: float | None
    denominator: float | None
    value: float | None


class PredictionScale(Block):
    """The amplitude scale applied before the metrics (telemetry.md ``prediction_scale``)."""

    mode: Literal["none", "recorded", "least_squares"]
    value: float | None
    applied: bool
    source: str | None = None
    reason: str | None = None
    least_squares: LeastSquares | None = None

    @property
    def factor(self) -> float:
        """The factor that multiplies the prediction amplitude (1 when none was applied)."""
        return float(self.value) if self.applied and self.value else 1.0


class EvaluationSettings(Block):
    register_subpixel: bool
    phase_ramp: bool
    amplitude_scale_mode: str


class EvaluationRegion(Block):
    """Which pixels were evaluated (stitch coverage & illuminated, or a given mask)."""

    rule: str
    stitch_covered_fraction: float
    illuminated_fraction: float | None
    evaluated_fraction: float
    covered_outside_illuminated_px: int
    settings: EvaluationSettings
    mask_source: str | None = None


class NetworkOnly(Block):
    """The network's stitched object before the refinement, by the same recipe (issue #12)."""

    amplitude: ChannelMetrics
    phase: ChannelMetrics
    prediction_scale: PredictionScale


class ComparisonRecord(Record):
    """The whole comparison_metrics.json."""

    schema_version: str = COMPARISON_SCHEMA
    amplitude: ChannelMetrics
    phase: ChannelMetrics
    full_canvas: FullCanvas
    registration: Registration
    prediction_scale: PredictionScale
    phase_offset_removed_rad: float
    phase_offset_weighting: str | None = None
    phase_ramp: dict[str, Any] | None = None
    coverage_fraction: float
    canvas_shape: list[int]
    evaluation_region: EvaluationRegion | None = None
    network_only: NetworkOnly | None = None

    def channel(self, name: str) -> ChannelMetrics:
        if name not in ("amplitude", "phase"):
            raise KeyError(f"no channel {name!r}; amplitude or phase")
        return getattr(self, name)

    def headline(self, coverage_fraction: float | None = None) -> ComparisonHeadline:
        """The ``comparison`` block of run_metadata.json / baseline_metadata.json.
        ``coverage_fraction``: the stitch coverage of the method (default: the evaluated one)."""
        return ComparisonHeadline(
            metrics_path=COMPARISON_FILE,
            amplitude=ChannelHeadline.of(self.amplitude), phase=ChannelHeadline.of(self.phase),
            full_canvas=self.full_canvas, registration=self.registration,
            coverage_fraction=self.coverage_fraction if coverage_fraction is None
            else coverage_fraction, evaluation_region=self.evaluation_region)


class FrcHeadline(Block):
    half_bit_resolution: float | None
    frc50: float | None
    half_bit_crossed: bool | None = None


class ChannelHeadline(Block):
    """The headline numbers of one channel (the one ``_headline`` shape)."""

    count: int
    coverage_fraction: float
    mae: float | None
    rmse: float | None
    max_abs: float | None
    pearson_r: float | None
    ssim: float | None
    psnr: Psnr
    bias_summary: BiasSummary | None
    registration: RegistrationShort | None = None
    output_range_check: OutputRangeCheck | None = None
    frc: FrcHeadline | None = None

    @classmethod
    def of(cls, ch: ChannelMetrics) -> ChannelHeadline:
        frc = None if ch.frc is None else FrcHeadline(
            half_bit_resolution=ch.frc.half_bit_resolution, frc50=ch.frc.frc50,
            half_bit_crossed=ch.frc.half_bit_crossed)
        return cls(count=ch.count, coverage_fraction=ch.coverage_fraction, mae=ch.mae,
                   rmse=ch.rmse, max_abs=ch.max_abs, pearson_r=ch.pearson_r, ssim=ch.ssim,
                   psnr=ch.psnr, bias_summary=ch.bias_summary, registration=ch.registration,
                   output_range_check=ch.output_range_check, frc=frc)


class NoTruthStats(Block):
    mean: float | None
    std: float | None
    min: float | None
    max: float | None


class NoTruthReconstruction(Block):
    """The stitched reconstruction of a run without a truth (scenarios/no_truth.py). Lengths are
    text with their unit (nm / um where the geometry is known, px otherwise)."""

    shape: list[int]
    coverage_fraction: float
    amplitude_covered: NoTruthStats
    phase_covered_rad: NoTruthStats
    field_of_view: list[str]
    object_pixel: str | None


class NoTruthProbe(Block):
    energy_photons: float
    shape: list[int]
    scaling: dict[str, Any] | None = None
    modes_in_file: int | None = None
    width: str


class NoTruthScan(Block):
    positions: int
    train: int
    test: int
    extent_px_xy: list[float]
    median_step_px: float | None
    extent: list[str]
    median_step: str | None


class DetectorMask(Block):
    masked_fraction: float


class ComparisonHeadline(Block):
    """run_metadata.json ``comparison``: the headline of comparison_metrics.json plus its path.
    Own data without a ground truth: ``available`` False, ``reason`` says why, no metrics (the
    block then carries reconstruction/probe/scan summaries, scenarios/no_truth.py)."""

    metrics_path: str | None = None
    amplitude: ChannelHeadline | None = None
    phase: ChannelHeadline | None = None
    available: bool = True
    reason: str | None = None
    full_canvas: FullCanvas | None = None
    registration: Registration | None = None
    coverage_fraction: float | None = None
    evaluation_region: EvaluationRegion | None = None
    # own data without a ground truth (available False): what can be known without one
    reconstruction: NoTruthReconstruction | None = None
    probe: NoTruthProbe | None = None
    scan: NoTruthScan | None = None
    detector_mask: DetectorMask | None = None
    product_file: str | None = None

    @model_serializer(mode="wrap")
    def _without_absent_no_truth_blocks(self, handler):
        """A run with a truth writes the block as before: no null no-truth keys."""
        data = handler(self)
        for key in NO_TRUTH_KEYS:
            if key in data and data[key] is None:
                del data[key]
        return data


NO_TRUTH_KEYS = ("reconstruction", "probe", "scan", "detector_mask", "product_file")
