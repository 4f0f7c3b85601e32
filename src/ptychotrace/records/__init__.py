"""Typed records: the files one stage writes and another reads (pydantic, schema-versioned).

One module per record family: :mod:`.comparison` (comparison_metrics.json),
:mod:`.run_metadata` (run_metadata.json), :mod:`.baseline` (baseline_metadata.json),
:mod:`.sweep` (sweep_summary.json), :mod:`.intensity_stats` (intensity_stats.json, and the label
blocks), :mod:`.history` (train_outputs/history*.json). :mod:`.examples` builds valid records for
tests.
"""

from .base import Block, Record, RecordError, read_optional
from .baseline import (
    BASELINE_METADATA_FILE,
    BaselineMetadata,
    BaselineSettings,
    Coverage,
    ReconstructionSummary,
)
from .comparison import (
    COMPARISON_FILE,
    BiasSummary,
    ChannelHeadline,
    ChannelMetrics,
    ComparisonHeadline,
    ComparisonRecord,
    EvaluationRegion,
    Frc,
    FullCanvas,
    PredictionScale,
    Psnr,
    Registration,
)
from .history import HISTORY_FILE, HISTORY_SUMMARY_FILE, HistorySummary, TrainingHistory
from .intensity_stats import (
    INTENSITY_STATS_FILE,
    ArrayStats,
    IntensityStats,
    LabelVsTruth,
    TrainingLabels,
)
from .run_metadata import (
    RUN_METADATA_FILE,
    Counts,
    DataConsistencyRef,
    DatasetScaleInfo,
    GeometryBlock,
    Inference,
    InferenceSeconds,
    Profile,
    Provenance,
    RunMetadata,
    SplitIntensityStats,
    Training,
)
from .sweep import SWEEP_SUMMARY_FILE, DoseBlock, PointMetrics, SweepRun, SweepSummary

__all__ = [
    "BASELINE_METADATA_FILE", "COMPARISON_FILE", "RUN_METADATA_FILE", "SWEEP_SUMMARY_FILE",
    "HISTORY_FILE", "HISTORY_SUMMARY_FILE", "INTENSITY_STATS_FILE", "ArrayStats",
    "DataConsistencyRef", "GeometryBlock", "HistorySummary", "IntensityStats", "LabelVsTruth",
    "TrainingHistory", "TrainingLabels",
    "BaselineMetadata", "BaselineSettings", "BiasSummary", "Block", "ChannelHeadline",
    "ChannelMetrics", "ComparisonHeadline", "ComparisonRecord", "Counts", "Coverage",
    "DatasetScaleInfo", "DoseBlock", "EvaluationRegion", "Frc", "FullCanvas", "Inference",
    "InferenceSeconds", "PointMetrics", "PredictionScale", "Profile", "Provenance", "Psnr",
    "ReconstructionSummary", "Record", "RecordError", "Registration", "RunMetadata",
    "SplitIntensityStats", "SweepRun", "SweepSummary", "Training", "read_optional",
]
