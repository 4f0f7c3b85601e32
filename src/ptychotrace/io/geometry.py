"""Physical geometry of a measurement and the metres <-> object-pixel convention.

Far field: one object pixel is ``dx = wavelength * distance / (N * detector_pixel)`` metres (per
axis, N the pattern side after cropping and binning, detector_pixel after binning). Scan positions
in metres map to object pixels with the ptychodus convention for an (H, W) object frame centred at
``(center_x_m, center_y_m)``::

    x_px = (x_m - center_x_m) / pixel_width_m + (W - 1) / 2      (x = column)
    y_px = (y_m - center_y_m) / pixel_height_m + (H - 1) / 2     (y = row)

Positions are converted once, at load; the record below travels in the dataset's metadata
(``metadata.geometry``) and from there into run_metadata.json.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: h * c / e, eV * m (exact SI constants): wavelength_m = HC_EV_M / photon_energy_eV.
HC_EV_M = 6.62607015e-34 * 299792458.0 / 1.602176634e-19
#: joules per electronvolt (exact).
J_PER_EV = 1.602176634e-19


def energy_ev_to_wavelength_m(energy_ev: float) -> float:
    return HC_EV_M / energy_ev


def wavelength_m_to_energy_ev(wavelength_m: float) -> float:
    return HC_EV_M / wavelength_m


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ObjectFrame(_Frozen):
    """The object-pixel frame that positions in metres were mapped into."""

    height_px: int = Field(gt=0)
    width_px: int = Field(gt=0)
    center_x_m: float
    center_y_m: float
    pixel_width_m: float = Field(gt=0)
    pixel_height_m: float = Field(gt=0)
    chosen_from: str = Field(description="where the frame came from (file, or the scan extent)")

    def to_pixels(self, x_m: np.ndarray, y_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = (np.asarray(x_m, np.float64) - self.center_x_m) / self.pixel_width_m + (self.width_px - 1) / 2
        y = (np.asarray(y_m, np.float64) - self.center_y_m) / self.pixel_height_m + (self.height_px - 1) / 2
        return x, y

    def to_metres(self, x_px: np.ndarray, y_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = (np.asarray(x_px, np.float64) - (self.width_px - 1) / 2) * self.pixel_width_m + self.center_x_m
        y = (np.asarray(y_px, np.float64) - (self.height_px - 1) / 2) * self.pixel_height_m + self.center_y_m
        return x, y


class DetectorPreparation(_Frozen):
    """What was done to the detector frames at load (in this order: saturation, crop, bin)."""

    original_shape: tuple[int, int]
    beam_centre_px: tuple[float, float] | None = Field(
        None, description="(row, column) in the original frame; crop box centred on it")
    beam_centre_from: str | None = None
    crop_box: tuple[int, int, int, int] | None = Field(None, description="row0, row1, col0, col1")
    bin_factor: int = 1
    saturation_count: float | None = None
    saturated_pixels: int = 0
    masked_fraction: float = 0.0
    rules: str = ("a binned pixel holds the sum of its bin x bin counts and is bad if any of them "
                  "is bad; a pixel above the saturation count in any pattern is bad in all")


class Geometry(_Frozen):
    """The physical record of one loaded file. Lengths in metres, energy in eV; None = unknown
    (and ``missing`` says which key the file lacked)."""

    source_format: str
    source_file: str | None = None
    photon_energy_eV: float | None = None
    wavelength_m: float | None = None
    detector_distance_m: float | None = None
    detector_pixel_width_m: float | None = Field(None, description="after binning")
    detector_pixel_height_m: float | None = None
    N: int | None = None
    object_pixel_width_m: float | None = Field(None, description="wavelength*distance/(N*pixel)")
    object_pixel_height_m: float | None = None
    object_frame: ObjectFrame | None = None
    position_convention: str | None = None
    probe_modes_in_file: int | None = None
    probe_mode_used: int | None = None
    probe_scaling: dict[str, Any] | None = None
    detector: DetectorPreparation | None = None
    missing: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def object_pixel_size_m(wavelength_m: float, distance_m: float, n: int, det_pixel_m: float) -> float:
    """Far-field real-space pixel: wavelength * distance / (N * detector pixel), metres."""
    return wavelength_m * distance_m / (n * det_pixel_m)


def frame_for_positions(x_m: np.ndarray, y_m: np.ndarray, pixel_width_m: float,
                        pixel_height_m: float, n: int) -> ObjectFrame:
    """The smallest frame that holds every patch: centred on the scan's bounding box, W = the
    x extent in pixels rounded up + N (so every patch centre lies >= N/2 - 1 px inside)."""
    x_m, y_m = np.asarray(x_m, np.float64), np.asarray(y_m, np.float64)
    w = int(math.ceil((x_m.max() - x_m.min()) / pixel_width_m)) + n
    h = int(math.ceil((y_m.max() - y_m.min()) / pixel_height_m)) + n
    return ObjectFrame(height_px=h, width_px=w, center_x_m=float((x_m.max() + x_m.min()) / 2),
                       center_y_m=float((y_m.max() + y_m.min()) / 2), pixel_width_m=pixel_width_m,
                       pixel_height_m=pixel_height_m, chosen_from="scan extent + N")


def scale_bar(length_px: float, pixel_m: float | None) -> str:
    """A human length for ``length_px`` object pixels: nm or um when the pixel size is known."""
    if pixel_m is None:
        return f"{length_px:.4g} px"
    m = length_px * pixel_m
    return f"{m * 1e9:.4g} nm" if m < 1e-6 else f"{m * 1e6:.4g} um"
