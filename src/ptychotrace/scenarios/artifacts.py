"""Image artifacts of a run: float32 .npy plus a labelled PNG, both written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..telemetry.writers import atomic_path, write_npy


def save_png(path: Path, image: np.ndarray, title: str, *, cmap: str = "viridis",
             vmin: float | None = None, vmax: float | None = None, units: str = "") -> Path:
    """A titled image with a colour bar (matplotlib's Agg canvas; no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x (object pixels)")
    ax.set_ylabel("y (object pixels)")
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if units:
        bar.set_label(units)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def save_image(out_dir: Path, stem: str, image: np.ndarray, title: str, **png) -> list[str]:
    """Write ``stem.npy`` (float32) and ``stem.png``; return their paths relative to out_dir."""
    write_npy(out_dir / f"{stem}.npy", np.asarray(image, dtype=np.float32))
    save_png(out_dir / f"{stem}.png", image, title, **png)
    return [f"{stem}.npy", f"{stem}.png"]
