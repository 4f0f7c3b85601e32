"""The report's figures, drawn with matplotlib's object API on an Agg canvas (no pyplot, no global
backend switch) and returned as PNG bytes: an image panel from a ``.npy`` array, the training
curves of ``history.json`` and the FRC curves of ``comparison_metrics.json``.

Object images carry a scale bar (:func:`scale_bar`) when the real-space pixel size is known
(run metadata ``geometry.object_pixel_width_m``, issue #13); without it they carry none, and their
axes stay in object pixels.

Each function takes plain values (arrays, dicts) and returns the PNG bytes, or ``None`` when there
is nothing to draw.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..format import format_value

__all__ = ["image_png", "image_figure", "comparison_png", "training_curves_png", "frc_png",
           "is_loss_metric", "symmetric_limit", "scale_bar", "ScaleBar", "BAD_COLOUR",
           "PNG_SIGNATURE"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Metric names (without a ``val_`` prefix) drawn with a log y axis.
LOSS_NAMES = ("loss", "nll", "mae", "realspace")
_DPI = 100


def _figure(width: float, height: float):
    """A figure on its own Agg canvas. Axes are placed by hand (subplots_adjust / add_axes):
    constrained layout doubles the drawing time and the report draws up to ten figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def _finite_or_nan(values: Sequence[Any]) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[i] = float(v)
    return out


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------
#: Colour of pixels with no value (uncovered, not illuminated, non-finite): not a data colour.
BAD_COLOUR = "#808080"


def symmetric_limit(*arrays: np.ndarray, fallback: float = math.pi) -> float:
    """Half-width of a symmetric colour range fitted to the data: max |finite value| over the
    arrays (phases in rad, differences), ``fallback`` when nothing is finite or all are 0."""
    peak = 0.0
    for a in arrays:
        a = np.asarray(a, dtype=np.float64)
        fin = a[np.isfinite(a)]
        if fin.size:
            peak = max(peak, float(np.max(np.abs(fin))))
    return peak if peak > 0 else fallback


def _prepared(array: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    a = np.squeeze(np.asarray(array, dtype=np.float64))
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {np.shape(array)}")
    if mask is not None:
        a = np.where(np.asarray(mask, dtype=bool), a, np.nan)
    return a


def _colour_range(a: np.ndarray, kind: str, limits) -> tuple[float, float, str, str]:
    """(vmin, vmax, cmap, range note) for an image of ``kind``."""
    finite = a[np.isfinite(a)]
    if kind == "difference":
        half = max(abs(float(limits[0])), abs(float(limits[1]))) if limits is not None else (
            float(np.percentile(np.abs(finite), 99)) or float(np.max(np.abs(finite))) or 1.0)
        return -half, half, "RdBu_r", f"±{format_value(half)}"
    if kind == "phase":
        half = (max(abs(float(limits[0])), abs(float(limits[1]))) if limits is not None
                else symmetric_limit(finite))
        return -half, half, "twilight_shifted" if half < math.pi else "twilight", \
            f"±{format_value(half)}"
    vmin, vmax = limits if limits is not None else (float(finite.min()), float(finite.max()))
    if vmin == vmax:  # a constant image still gets a readable colour bar
        vmin, vmax = vmin - 0.5, vmax + 0.5
    return float(vmin), float(vmax), "viridis", f"{format_value(vmin)} to {format_value(vmax)}"


# --------------------------------------------------------------------------------------------
# scale bar
# --------------------------------------------------------------------------------------------
#: Kinds of image that show the object (and get a scale bar when the pixel size is known).
OBJECT_KINDS = ("amplitude", "phase")
#: (upper bound in metres, unit, metres per unit): the unit of a bar's label.
_LENGTH_UNITS = ((1e-6, "nm", 1e-9), (1e-3, "µm", 1e-6), (math.inf, "mm", 1e-3))


@dataclass(frozen=True)
class ScaleBar:
    """A scale bar: ``length_m`` metres (a 1-2-5 value) drawn ``length_px`` pixels long."""

    length_m: float
    length_px: float
    label: str


def scale_bar(pixel_size_m: float | None, width_px: int, fraction: float = 0.2) -> ScaleBar | None:
    """The scale bar of an image ``width_px`` pixels wide whose pixels are ``pixel_size_m`` metres.

    The length is the 1-2-5 value (1, 2, 5 x 10^k m) nearest, on a log scale, to ``fraction`` of
    the image width, labelled in nm, µm or mm. None (no bar) when the pixel size is unknown or
    not a positive finite number, or the image is empty."""
    if pixel_size_m is None or width_px <= 0:
        return None
    px = float(pixel_size_m)
    if not (math.isfinite(px) and px > 0):
        return None
    target = fraction * width_px * px
    decade = 10.0 ** math.floor(math.log10(target))
    candidates = [m * decade for m in (1.0, 2.0, 5.0, 10.0)]
    length = min(candidates, key=lambda c: abs(math.log(c / target)))
    # (the relative margin keeps 10 x 1e-7 m, which may round to just under 1e-6, out of "nm")
    unit, per = next((u, p) for bound, u, p in _LENGTH_UNITS if length < bound * (1 - 1e-9))
    return ScaleBar(length, length / px, f"{length / per:.3g} {unit}")


def _draw_scale_bar(ax, bar: ScaleBar, height_px: int) -> None:
    """The bar in data (pixel) units at the lower left, on a white box so it reads on any map."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    artist = AnchoredSizeBar(ax.transData, bar.length_px, bar.label, "lower left", pad=0.3,
                             borderpad=0.4, sep=2, color="black", frameon=True,
                             size_vertical=max(height_px / 60.0, 0.5), fontproperties={"size": 7})
    artist.patch.set_alpha(0.8)
    artist.set_gid("scale-bar")
    ax.add_artist(artist)


def _panel(fig, ax, cax, a: np.ndarray, title: str, kind: str, unit: str, limits,
           pixel_size_m: float | None = None) -> ScaleBar | None:
    import matplotlib

    vmin, vmax, cmap, note = _colour_range(a, kind, limits)
    cm = matplotlib.colormaps[cmap].with_extremes(bad=BAD_COLOUR)
    im = ax.imshow(np.ma.masked_invalid(a), cmap=cm, vmin=vmin, vmax=vmax,
                   interpolation="nearest", aspect="auto")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (px)", fontsize=8, labelpad=1)
    ax.set_ylabel("y (px)", fontsize=8, labelpad=1)
    ax.tick_params(labelsize=7)
    cb = fig.colorbar(im, cax=cax)
    cb.set_label(f"{unit} [{note}]" if unit else note, fontsize=7)
    cb.ax.tick_params(labelsize=7)
    bar = scale_bar(pixel_size_m, a.shape[1]) if kind in OBJECT_KINDS else None
    if bar is not None:
        _draw_scale_bar(ax, bar, a.shape[0])
    return bar


def image_figure(array: np.ndarray, title: str, kind: str, unit: str,
                 limits: tuple[float, float] | None = None, mask: np.ndarray | None = None,
                 pixel_size_m: float | None = None):
    """The matplotlib Figure behind :func:`image_png` (None when no pixel is finite)."""
    a = _prepared(array, mask)
    if not np.isfinite(a).any():
        return None
    aspect = min(max(a.shape[1] / a.shape[0], 0.6), 1.6)
    height = 3.2
    width = 2.5 * aspect + 1.6  # image + margins + colour bar (inches)
    fig = _figure(width, height)
    ax = fig.add_axes((0.55 / width, 0.42 / height, 2.5 * aspect / width, 2.5 / height))
    cax = fig.add_axes(((0.55 + 2.5 * aspect + 0.12) / width, 0.42 / height, 0.12 / width,
                        2.5 / height))
    _panel(fig, ax, cax, a, title, kind, unit, limits, pixel_size_m)
    return fig


def image_png(array: np.ndarray, title: str, kind: str, unit: str,
              limits: tuple[float, float] | None = None,
              mask: np.ndarray | None = None, pixel_size_m: float | None = None) -> bytes | None:
    """One image panel with a colour bar: the one image writer of the project.

    kind: "amplitude" (viridis, ``limits`` or the finite min/max), "phase" (cyclic map, range
    symmetric about 0 fitted to the data, or ``limits`` (-h, h)) or "difference" (RdBu_r,
    symmetric at the 99th percentile of |value|, or ``limits``). ``mask`` (bool): pixels outside
    it have no value and are drawn in BAD_COLOUR, as non-finite pixels are; never as 0. The colour
    range is stated on the colour bar. ``pixel_size_m``: the object pixel size in metres; when
    given, amplitude and phase images get a labelled scale bar (:func:`scale_bar`), otherwise
    none. Returns None when no pixel is finite.
    """
    fig = image_figure(array, title, kind, unit, limits, mask, pixel_size_m)
    return None if fig is None else _png(fig)


def comparison_png(rows: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray, str]],
                   mask: np.ndarray | None = None, title: str = "",
                   pixel_size_m: float | None = None) -> bytes | None:
    """Truth | prediction | difference side by side, one row per channel, on shared scales.

    rows: (kind "amplitude" | "phase", truth, prediction, difference, unit). Truth and prediction
    share one colour range per row (amplitude: their joint min/max on the mask; phase: symmetric,
    fitted to both); the difference is symmetric about 0. Pixels outside ``mask`` are BAD_COLOUR.
    ``pixel_size_m`` (metres, when known): a scale bar on the truth and prediction panels.
    """
    if not rows:
        return None
    pitch = 3.95                                   # inches per column: image, bar, its label
    width, height = 0.65 + 3 * pitch, 3.1 * len(rows) + 0.4
    fig = _figure(width, height)
    for r, (kind, truth, pred, diff, unit) in enumerate(rows):
        t, p, d = (_prepared(x, mask) for x in (truth, pred, diff))
        both = np.concatenate([t[np.isfinite(t)], p[np.isfinite(p)]])
        if both.size == 0:
            continue
        if kind == "phase":
            h = symmetric_limit(both)
            limits = (-h, h)
        else:
            limits = (float(both.min()), float(both.max()))
        dh = symmetric_limit(d, fallback=1.0)
        top = 1 - (0.4 + 3.1 * r) / height
        for c, (img, name, k, lim) in enumerate(((t, "truth", kind, limits),
                                                 (p, "prediction", kind, limits),
                                                 (d, "prediction - truth", "difference",
                                                  (-dh, dh)))):
            left = (0.6 + c * pitch) / width
            ax = fig.add_axes((left, top - 2.55 / height, 2.45 / width, 2.4 / height))
            cax = fig.add_axes((left + 2.55 / width, top - 2.55 / height, 0.1 / width,
                                2.4 / height))
            if np.isfinite(img).any():
                _panel(fig, ax, cax, img, f"{kind}: {name}", k, unit, lim, pixel_size_m)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.12 / height)
    return _png(fig)


# --------------------------------------------------------------------------------------------
# training curves
# --------------------------------------------------------------------------------------------
def is_loss_metric(name: str) -> bool:
    base = name.removeprefix("val_")
    return base in LOSS_NAMES or "loss" in base


def _plain_log_formatter(**kwargs):
    """matplotlib's LogFormatter (it decides which ticks get a label) printing "0.6", not "6e-01"."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def __call__(self, x, pos=None):
            return f"{x:.3g}" if super().__call__(x, pos) else ""

    return PlainLogFormatter(**kwargs)


def training_curves_png(history: Mapping[str, Any]) -> tuple[bytes | None, list[str]]:
    """Small multiples, one panel per metric (its ``val_`` twin dashed in the same panel), against
    the epoch. Losses get a log y axis when all their values are positive (otherwise linear, and
    a note says so). Null (non-finite) values are gaps, marked with a red tick on the x axis.

    ``history``: {"metrics": {name: [value per epoch]}, "epochs": [...]} (epochs default to
    1..n). Returns (PNG bytes or None when there is no metric, notes).
    """
    from matplotlib.ticker import MaxNLocator

    metrics = history.get("metrics") if isinstance(history, Mapping) else None
    if not isinstance(metrics, Mapping) or not metrics:
        return None, ["history.json has no metrics"]
    series = {k: v for k, v in metrics.items() if isinstance(v, list) and v}
    if not series:
        return None, ["history.json holds no values"]
    n_max = max(len(v) for v in series.values())
    epochs = history.get("epochs")
    if not (isinstance(epochs, list) and len(epochs) == n_max):
        epochs = list(range(1, n_max + 1))
    x_all = np.asarray(_finite_or_nan(epochs))

    panels: dict[str, list[str]] = {}
    for name in series:
        base = name.removeprefix("val_")
        panels.setdefault(base if base in series else name, []).append(name)
    notes: list[str] = []
    n = len(panels)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(4.0 * ncols, 2.7 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False,
                        gridspec_kw={"left": 0.6 / (4.0 * ncols), "right": 1 - 0.15 / (4.0 * ncols),
                                     "bottom": 0.45 / (2.7 * nrows), "top": 1 - 0.3 / (2.7 * nrows),
                                     "wspace": 0.28, "hspace": 0.55}).ravel()
    for ax, (panel, names) in zip(axes, panels.items(), strict=False):
        all_vals: list[float] = []
        for name in sorted(names, key=lambda s: s.startswith("val_")):
            y = _finite_or_nan(series[name])
            x = x_all[: len(y)]
            val = name.startswith("val_") and name != panel
            ax.plot(x, y, linestyle="--" if val else "-", marker="o", markersize=2.5,
                    linewidth=1.4, label="validation" if val else "train")
            gaps = x[np.isnan(y)]
            if gaps.size:
                ax.plot(gaps, np.zeros_like(gaps), "|", color="red", markersize=10,
                        transform=ax.get_xaxis_transform(), clip_on=False)
                notes.append(f"{name}: {gaps.size} non-finite value(s), first at epoch "
                             f"{gaps[0]:g} (red ticks)")
            all_vals += [v for v in y if not math.isnan(v)]
        title = panel
        if is_loss_metric(panel) and all_vals:
            if min(all_vals) > 0:
                ax.set_yscale("log")
                # plain numbers ("0.6") rather than "6 x 10^-1" on the ticks
                ax.yaxis.set_major_formatter(_plain_log_formatter())
                # label a few minor ticks when the range is under a decade, never all of them
                ax.yaxis.set_minor_formatter(_plain_log_formatter(labelOnlyBase=False,
                                                                  minor_thresholds=(1, 0)))
                title += " (log y)"
            else:
                notes.append(f"{panel}: linear y axis (values <= 0 cannot go on a log axis)")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        finite_x = x_all[np.isfinite(x_all)]
        if finite_x.size and finite_x.min() == finite_x.max():  # one epoch: a readable axis
            ax.set_xlim(finite_x.min() - 1, finite_x.max() + 1)
        ax.tick_params(labelsize=7, which="both")
        ax.grid(True, alpha=0.3, which="both")
        if len(names) > 1:
            ax.legend(fontsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    return _png(fig), notes


# --------------------------------------------------------------------------------------------
# FRC
# --------------------------------------------------------------------------------------------
def _curve_arrays(curve: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    if not isinstance(curve, list):
        return None
    rows = [c for c in curve if isinstance(c, Mapping)]
    if not rows:
        return None
    f = _finite_or_nan([c.get("spatial_frequency") for c in rows])
    v = _finite_or_nan([c.get("frc") for c in rows])
    t = _finite_or_nan([c.get("half_bit_threshold") for c in rows])
    return (f, v, t) if np.isfinite(f).any() else None


def frc_png(channels: Mapping[str, Mapping[str, Any] | None]) -> bytes | None:
    """One panel per channel ({"amplitude": frc block, "phase": frc block}): the FRC curve, the
    1/2-bit threshold, the 0.5 line, and vertical markers at the recorded crossings (labelled
    with the resolution in pixels). Returns None when no channel has a curve."""
    usable = {ch: (blk, _curve_arrays(blk.get("curve"))) for ch, blk in channels.items()
              if isinstance(blk, Mapping)}
    usable = {ch: v for ch, v in usable.items() if v[1] is not None}
    if not usable:
        return None
    width = 5.0 * len(usable)
    fig = _figure(width, 3.4)
    axes = fig.subplots(1, len(usable), squeeze=False,
                        gridspec_kw={"left": 0.55 / width, "right": 1 - 0.15 / width,
                                     "bottom": 0.14, "top": 0.85, "wspace": 0.22}).ravel()
    for ax, (ch, (blk, (f, v, t))) in zip(axes, usable.items(), strict=True):
        ax.plot(f, v, color="#1f5fbf", linewidth=1.6, label="FRC")
        ax.plot(f, t, color="#d9822b", linestyle="--", linewidth=1.2, label="1/2-bit threshold")
        ax.axhline(0.5, color="#666666", linestyle=":", linewidth=1.2, label="0.5")
        for key, res_key, color in (("half_bit_crossing_frequency", "half_bit_resolution", "#d9822b"),
                                    ("frc50_crossing_frequency", "frc50", "#666666")):
            fc, res = blk.get(key), blk.get(res_key)
            if isinstance(fc, (int, float)) and math.isfinite(fc):
                label = f"{'1/2-bit' if res_key.startswith('half') else 'FRC 0.5'}: " \
                        f"{res:.3g} px" if isinstance(res, (int, float)) else None
                ax.axvline(fc, color=color, linewidth=0.9, alpha=0.8, label=label)
        low = float(np.nanmin(v)) if np.isfinite(v).any() else 0.0
        ax.set_ylim(min(-0.05, low - 0.05), 1.05)
        ax.set_xlim(0, max(0.5, float(np.nanmax(f))))
        from ..format import format_resolution

        ax.set_title(f"{ch} FRC\n1/2-bit resolution: {format_resolution(blk)}", fontsize=9)
        ax.set_xlabel("spatial frequency (cycles/pixel)", fontsize=8)
        ax.set_ylabel("FRC", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    return _png(fig)
