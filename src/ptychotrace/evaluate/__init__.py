"""Evaluation against ground truth: registration, phase/scale alignment, metrics, FRC.

Pure NumPy/SciPy/scikit-image. Entry point: :func:`compare_reconstruction`.
"""

from .align import (
    AMPLITUDE_SCALE_MODES,
    amplitude_scale,
    apply_shift,
    integer_shift_mask,
    register_subpixel,
    remove_phase_offset,
    remove_phase_ramp,
    wrap_phase,
)
from .frc import fourier_ring_correlation, half_bit_threshold
from .metrics import (
    HEADLINE_KEYS,
    REGISTRATION_MIN_SHIFT_PX,
    compare_channel,
    compare_reconstruction,
    output_range_check,
)

__all__ = [
    "AMPLITUDE_SCALE_MODES",
    "HEADLINE_KEYS",
    "REGISTRATION_MIN_SHIFT_PX",
    "amplitude_scale",
    "apply_shift",
    "compare_channel",
    "compare_reconstruction",
    "fourier_ring_correlation",
    "half_bit_threshold",
    "integer_shift_mask",
    "output_range_check",
    "register_subpixel",
    "remove_phase_offset",
    "remove_phase_ramp",
    "wrap_phase",
]
