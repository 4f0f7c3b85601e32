"""Numbers for a person: the one formatting helper (reports, summaries, command output, logs).

``format_value``: 4 significant digits by default, integers with thousands separators, the unit
after a space, ``None`` / non-finite as "n/a", booleans "yes"/"no".
``format_resolution``: an FRC resolution, saying "threshold not crossed" instead of "n/a".
``format_metrics``: ``name value`` pairs on one line with no wrapping inside a number (for
progress lines: join with two spaces, never split a number).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["format_value", "format_resolution", "format_metrics", "NYQUIST_PX"]

#: The finest resolution an FRC on a pixel grid can report: 2 px per cycle (0.5 cycles/px).
NYQUIST_PX = 2.0


def format_value(x: Any, unit: str = "", digits: int = 4, thousands: bool = True) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        text = f"{int(x):,}" if thousands else str(int(x))
    elif isinstance(x, (float, np.floating)):
        if not math.isfinite(float(x)):
            return "n/a"
        text = f"{float(x):.{digits}g}"
    else:
        return str(x)
    return f"{text} {unit}" if unit else text


def _get(block: Any, key: str) -> Any:
    if block is None:
        return None
    if isinstance(block, Mapping):
        return block.get(key)
    return getattr(block, key, None)


def format_resolution(frc: Any, key: str = "half_bit_resolution", digits: int = 4) -> str:
    """An FRC resolution in pixels from an FRC block (dict or records.comparison.Frc).

    Never crossed -> "at least Nyquist (2 px): threshold not crossed"; undefined -> "undefined
    (<note>)"; no block -> "n/a"."""
    if frc is None:
        return "n/a"
    value = _get(frc, key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return format_value(float(value), "px", digits)
    crossed = _get(frc, f"{key.replace('_resolution', '')}_crossed")
    note = _get(frc, f"{key}_note") or (getattr(frc, "note", None)
                                        if not isinstance(frc, Mapping) else frc.get("note"))
    if note is None and not isinstance(frc, Mapping):
        note = (frc.model_extra or {}).get(f"{key}_note") if hasattr(frc, "model_extra") else None
    if crossed is False or (note and "up to Nyquist" in str(note)):
        return f"at least Nyquist ({NYQUIST_PX:g} px): threshold not crossed"
    return f"undefined ({note})" if note else "n/a"


def wrap_tokens(tokens: list[str], width: int, sep: str = "  ", indent: str = "    ") -> str:
    """Join ``tokens`` with ``sep``, breaking lines only between tokens so no line exceeds
    ``width`` (a token longer than the width gets a line of its own). Terminals and rich wrap
    at any space, non-breaking ones included, which can split ``loss 0.06`` from its value."""
    lines: list[str] = []
    line = ""
    for tok in tokens:
        candidate = f"{line}{sep}{tok}" if line else (indent if lines else "") + tok
        if line and len(candidate) > width:
            lines.append(line)
            line = indent + tok
        else:
            line = candidate
    if line:
        lines.append(line)
    return "\n".join(lines)


def format_metrics(values: Mapping[str, Any], digits: int = 4, sep: str = "  ") -> str:
    """``name value`` pairs joined by ``sep``; each pair is one unbreakable token (non-breaking
    space inside), so a terminal that wraps the line wraps between pairs, never mid-number."""
    return sep.join(f"{k}\u00a0{format_value(v, digits=digits, thousands=False)}"
                    for k, v in values.items())
