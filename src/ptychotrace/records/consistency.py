"""Typed records of the data-consistency check (``consistency/consistency.json``): written by
:mod:`ptychotrace.evaluate.consistency_record`, read by the analyzer and the report. The
definitions of the numbers (normalised deviance D/E, z, relative misfit) are in
:mod:`ptychotrace.evaluate.consistency`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

CONSISTENCY_SCHEMA_VERSION = "1.0"
#: A pattern is beyond the bound when z_j = (D_j - E_j) / sqrt(V_j) exceeds this.
Z_BOUND = 5.0


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DevianceSummary(_Record):
    """Summary of the per-pattern deviance of one reconstruction (see the module docstring)."""

    n_patterns: int
    n_valid_pixels: int
    normalised_median: float | None
    normalised_p90: float | None
    normalised_aggregate: float | None          # sum_j D_j / sum_j E_j
    z_aggregate: float | None                   # (sum D - sum E) / sqrt(sum V): ~N(0, 1) if consistent
    deviance_per_pixel_median: float | None     # raw D_j / n_valid_pixels
    expected_per_pixel_median: float | None     # E_j / n_valid_pixels (1 at high dose, < 1 low)
    z_bound: float = Z_BOUND
    fraction_beyond_bound: float | None         # fraction of patterns with z_j > z_bound
    relative_misfit_median: float | None        # rms far-field amplitude error / measured
    photons_measured_mean: float | None
    photons_predicted_mean: float | None
    non_finite_patterns: int
    explained_vs_flat: float | None = None      # 1 - excess(D) / excess(flat object); see flat_null
    table: str | None = None                    # per-pattern .npy, relative to the run dir


class PositionCheck(_Record):
    """Scan-position hypotheses tested on the ground truth (integer shifts of each pattern)."""

    n_patterns: int
    max_shift_px: int
    normalised_median_as_recorded: float | None
    normalised_median_swapped_xy: float | None
    normalised_median_best_common_shift: float | None
    common_shift_px: list[float] | None         # [dy, dx] best shift of all patterns together
    normalised_median_best_per_pattern_shift: float | None
    per_pattern_shift_spread_px: float | None   # median |best_j - median best| (0 = common)
    fraction_shifted: float | None              # patterns whose best shift is not (0, 0)


class PhotonCheck(_Record):
    """Photons per pattern: nominal, measured, and predicted by the truth with the run's probe."""

    nominal: float | None
    measured_train: float | None
    measured_test: float | None
    predicted_train: float | None
    predicted_test: float | None
    measured_over_nominal: float | None
    measured_over_predicted: float | None       # all patterns (1 = probe energy explains counts)
    test_over_train_measured: float | None
    test_over_train_predicted: float | None
    parity_deviation_from_predicted_pct: float | None
    probe_energy_photons: float                 # sum |P|^2 of the physical probe
    measured_over_probe_energy: float | None    # mean |O|^2 seen by the probe (<= 1 if passive)
    truth_scale_fit: float | None = None        # best c on lam_truth (measured/predicted, all)
    truth_scaled_normalised_median: float | None = None   # deviance of c * lam_truth


class ModelOutputCheck(_Record):
    """The network's own output on the test patterns (before stitching and refinement)."""

    amplitude_mean: float | None
    amplitude_contrast: float | None            # std / mean of |O| over the probe's support
    truth_contrast: float | None                # the same on the truth, where a truth exists
    fraction_at_bound: float | None
    bound: float | None
    non_finite_fraction: float
    fraction_at_max: float | None = None        # pixels tied (1e-3 rel) at the output's maximum


class ConsistencyRecord(_Record):
    """consistency/consistency.json."""

    schema_version: str = CONSISTENCY_SCHEMA_VERSION
    normalisation: str
    final: DevianceSummary | None
    network_only: DevianceSummary | None
    truth: DevianceSummary | None
    photons: PhotonCheck
    positions: PositionCheck | None
    model_output: ModelOutputCheck | None
    valid_pixels: int
    detector_pixels: int
    notes: list[str] = []
    artifacts: list[str] = []


NORMALISATION = ("normalised deviance of pattern j = D_j / E_j, D_j = sum_k 2[I log(I/lam) - "
                 "(I - lam)] over valid pixels, E_j = sum_k E[d] under Poisson(lam_jk) (exact); "
                 "~1 for a reconstruction consistent with the data at any dose; beyond the "
                 f"bound: z_j = (D_j - E_j)/sqrt(Var_j) > {Z_BOUND:g}")
