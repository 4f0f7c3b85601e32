"""Summary statistics of NumPy arrays, the unit of every telemetry block.

``array_stats`` takes a NumPy array and nothing else: it never forces a device tensor onto the
host (callers convert explicitly, e.g. ``t.detach().cpu().numpy()``, where they decide the copy
is worth it). It only reads its input.

Reductions (min, max, mean, std) run in float64 over the *finite* values; when no value is
finite they are ``None`` (never NaN), so the result is always valid JSON. Counts:
``nan_count`` (NaN elements), ``inf_count`` (+-Inf), ``finite_count``, ``total_count``.

Complex arrays: min/max/mean/std of a complex value are not defined, so they are ``None`` at the
top level and the statistics live in two sub-blocks, ``amplitude`` (``|a|``, same units as the
array) and ``phase`` (``angle(a)``, radians in [-pi, pi], plain linear statistics). An element
counts as NaN when its real or imaginary part is NaN, and as finite when both parts are finite.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

STAT_KEYS = ("shape", "dtype", "min", "max", "mean", "std", "nan_count", "inf_count",
             "finite_count", "total_count")


def _require_numpy(a: Any) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    if isinstance(a, np.generic):
        return np.asarray(a)
    kind = f"{type(a).__module__}.{type(a).__qualname__}"
    hint = (" (a tensor: convert explicitly with .detach().cpu().numpy() where the copy is wanted)"
            if hasattr(a, "detach") else "")
    raise TypeError(f"array_stats takes a numpy.ndarray, got {kind}{hint}")


def _real_block(values: np.ndarray) -> dict[str, Any]:
    """min/max/mean/std in float64 over the finite entries of a real array (None when none)."""
    finite = np.isfinite(values)
    n_finite = int(np.count_nonzero(finite))
    if n_finite == 0:
        return {"min": None, "max": None, "mean": None, "std": None}
    vals = values if n_finite == values.size else values[finite]
    return {
        "min": float(np.min(vals)),
        "max": float(np.max(vals)),
        "mean": float(np.mean(vals, dtype=np.float64)),
        "std": float(np.std(vals, dtype=np.float64)),
    }


def array_stats(a: np.ndarray, note: str | None = None) -> dict[str, Any]:
    """Statistics of a NumPy array (see the module docstring); ``note`` is stored when given."""
    arr = _require_numpy(a)
    out: dict[str, Any] = {"shape": [int(s) for s in arr.shape], "dtype": str(arr.dtype)}
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or np.issubdtype(arr.dtype, np.bool_)):
        raise TypeError(f"array_stats needs a numeric array, got dtype {arr.dtype}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    total = int(arr.size)
    if np.iscomplexobj(arr):
        nan = np.isnan(arr.real) | np.isnan(arr.imag)
        finite_mask = np.isfinite(arr)  # both parts finite
        n_finite = int(np.count_nonzero(finite_mask))
        finite_vals = arr if n_finite == total else arr[finite_mask]
        amp = np.abs(finite_vals).astype(np.float64, copy=False)
        phase = np.angle(finite_vals).astype(np.float64, copy=False)
        out.update({"min": None, "max": None, "mean": None, "std": None})
        n_nan = int(np.count_nonzero(nan))
        out.update({"nan_count": n_nan, "inf_count": total - n_finite - n_nan,
                    "finite_count": n_finite, "total_count": total, "complex": True,
                    "amplitude": _real_block(amp), "phase": _real_block(phase)})
    else:
        if np.issubdtype(arr.dtype, np.floating):
            n_nan = int(np.count_nonzero(np.isnan(arr)))
            n_inf = int(np.count_nonzero(np.isinf(arr)))
        else:
            n_nan = n_inf = 0
        out.update(_real_block(arr))
        out.update({"nan_count": n_nan, "inf_count": n_inf, "finite_count": total - n_nan - n_inf,
                    "total_count": total})
    if note is not None:
        out["note"] = note
    return out


def format_number(x: Any, digits: int = 4) -> str:
    """Compact human form of a number for Markdown tables ("n/a" for None/non-numbers)."""
    from ..format import format_value

    return format_value(x, digits=digits, thousands=False)


def dig(d: Any, *keys: str) -> Any:
    """``d[k1][k2]...`` for nested JSON blocks, or None as soon as a level is missing."""
    for k in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d
