"""intensity_stats.json: the scale chain of one run (telemetry.md), and the label blocks it shares
with run_metadata.json.

Written by :meth:`ptychotrace.telemetry.recorder.RunRecorder.write_intensity_stats` (content from
:func:`ptychotrace.telemetry.scale_chain.build_intensity_stats`), read by the report. Stage
statistics are :func:`ptychotrace.telemetry.stats.array_stats` of the stage's array (amplitudes in
sqrt(photons) or the stage's own units, see each stage's ``domain``).
"""

from __future__ import annotations

from pydantic import Field, PrivateAttr, ValidationError, model_validator

from .base import Block, Record

INTENSITY_STATS_FILE = "intensity_stats.json"


class RealStats(Block):
    """min, max, mean, std (float64) over the finite entries; None when there are none."""

    min: float | None
    max: float | None
    mean: float | None
    std: float | None


class ArrayStats(RealStats):
    """telemetry.stats.array_stats: shape, dtype, finite statistics and counts. Complex arrays
    have ``complex`` True, no real statistics, and ``amplitude`` / ``phase`` (rad) blocks."""

    shape: list[int]
    dtype: str
    nan_count: int
    inf_count: int
    finite_count: int
    total_count: int
    complex: bool = False
    amplitude: RealStats | None = None
    phase: RealStats | None = None
    note: str | None = None


class StageMetadata(Block):
    count: int | None = None
    gridsize: int | None = None
    group_limit: int | None = None
    domain: str | None = None


class IntensityStage(Block):
    name: str
    source: str
    stats: ArrayStats
    metadata: StageMetadata = Field(default_factory=StageMetadata)


class LargestDrop(Block):
    name: str
    value: float | None
    abs_log10: float | None


class FullChain(Block):
    ratios: list[str]
    product: float | None
    product_over_normalize_gain: float | None
    note: str | None = None


class SymmetryCheck(Block):
    """Ratios checked against their expected values (relative tolerance)."""

    definition: str | None = None
    expected: dict[str, float]
    actual: dict[str, float | None] = Field(default_factory=dict)
    relative_deviation: dict[str, float | None]
    tolerance: float
    violated: bool
    violations: list[str]
    primary_deviation_ratio: str | None = None
    primary_deviation_source: str | None
    unchecked: dict[str, str]


class IntensityScale(Block):
    """telemetry.scale_chain.intensity_scale_block: the dose scale used and the model's, in
    sqrt(photons) (``ratio`` dimensionless)."""

    dataset_derived: float | None
    fallback: float | None
    used_mode: str | None
    used_value: float | None
    # the helper's docstring says a flag, but the runner passes the checkpoint's recorded dose
    # scale (sqrt(photons)) here: both shapes occur in real run directories
    recorded_in_checkpoint: bool | float | None
    model_value: float | None
    delta: float | None
    ratio: float | None


class TrainingLabels(Block):
    """Block ``training_labels``: one :class:`ArrayStats` per label the training container holds
    (X, Y_amp, Y_I, Y_phi, Y and extra ones, under their own names) and ``missing``: why a label
    is absent. The labels are validated; :attr:`labels` gives them typed."""

    missing: dict[str, str] = Field(default_factory=dict)
    _labels: dict[str, ArrayStats] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _validate_labels(self) -> TrainingLabels:
        labels = {}
        for name, stats in (self.model_extra or {}).items():
            try:
                labels[name] = ArrayStats.model_validate(stats)
            except ValidationError as exc:
                raise ValueError(f"label {name}: {exc.errors()[0]['loc']}: "
                                 f"{exc.errors()[0]['msg']}") from None
        self._labels = labels
        return self

    @property
    def labels(self) -> dict[str, ArrayStats]:
        return dict(self._labels)


class LabelVsTruth(Block):
    """Block ``label_vs_truth_analysis`` (telemetry.scale_chain.label_vs_truth): label means
    against the ground-truth amplitude mean, their gap in % and the verdict. A run without a
    ground truth records ``verdict`` None and the ``reason``; otherwise the gap, the tolerance
    and the truth's mean are required (null when not computable)."""

    verdict: str | None
    reason: str | None = None
    amplitude_gap_pct: float | None = None
    tolerance: float | None = None
    ground_truth_amp_mean: float | None = None

    @model_validator(mode="after")
    def _judged_or_why_not(self) -> LabelVsTruth:
        if self.verdict is None:
            if not self.reason:
                raise ValueError("a label_vs_truth_analysis without a verdict needs a reason")
        else:
            lacking = [k for k in ("amplitude_gap_pct", "tolerance", "ground_truth_amp_mean")
                       if k not in self.model_fields_set]
            if lacking:
                raise ValueError(f"a verdict needs {', '.join(lacking)}")
        return self


class IntensityStats(Record):
    """The whole intensity_stats.json."""

    schema_version: str
    stages: list[IntensityStage]
    missing_stages: list[str] = Field(default_factory=list)
    stage_means: dict[str, float | None]
    ratios: dict[str, float | None]
    ratio_definitions: dict[str, str] = Field(default_factory=dict)
    ratio_notes: dict[str, str] = Field(default_factory=dict)
    largest_drop: LargestDrop | None
    normalize_gain: float | None
    full_chain_product: float | None
    full_chain: FullChain | None = None
    symmetry_check: SymmetryCheck | None
    intensity_scale: IntensityScale | None = None
    training_labels: TrainingLabels | None = None
    label_vs_truth_analysis: LabelVsTruth | None = None
