"""Resume: whether a point's PINN run and baseline are finished, to redo, or in conflict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .plan import BASELINE_METADATA, COMPARISON, BaselineOptions, SweepPoint


# --------------------------------------------------------------------------------------------
# Resume state
# --------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _config_diff(finished: dict | None, wanted) -> list[str]:
    """Dotted keys where a finished run's saved config differs from ``wanted`` (a RunConfig).
    The saved one is re-validated first, so a section or field added since (with its default)
    is no difference; a config that no longer validates differs at the top level."""
    from ..config import RunConfig

    try:
        old = RunConfig.model_validate(finished or {}).to_dict()
    except ValueError:
        return ["config (no longer a valid RunConfig)"]
    new = wanted.to_dict()
    for d in (old, new):   # the PINN run does not use the baseline section
        d.pop("baseline", None)
    return _diff_keys(old, new)


def pinn_state(point: SweepPoint) -> tuple[str, str]:
    """('finished' | 'conflict' | 'redo' | 'new', reason) for the PINN run of a point."""
    from ..records.base import RecordError
    from ..records.run_metadata import RunMetadata

    if not point.run_dir.exists():
        return "new", "no run directory"
    try:
        meta = RunMetadata.read(point.run_dir / "run_metadata.json")
    except RecordError:
        return "redo", "run_metadata.json missing or unreadable"
    if not meta.finished_ok:
        err = meta.error.message if meta.error else None
        return "redo", f"previous run status {meta.status!r}" + (f": {err}" if err else "")
    diff = _config_diff(meta.config, point.request.config)
    if diff:
        return "conflict", ("finished run was made with a different configuration (differs in "
                            f"{', '.join(diff[:6])}{'...' if len(diff) > 6 else ''})")
    return "finished", "run_metadata.json status ok"


def baseline_state(point: SweepPoint, options: BaselineOptions) -> tuple[str, str]:
    """Same as :func:`pinn_state` for the baseline of a point."""
    from ..records.base import RecordError
    from ..records.baseline import BaselineMetadata

    if not point.baseline_dir.exists():
        return "new", "no baseline directory"
    try:
        meta = BaselineMetadata.read(point.baseline_dir / BASELINE_METADATA)
    except RecordError as exc:
        return "redo", f"{BASELINE_METADATA} missing, unreadable or not a baseline record ({exc})"
    if meta.status != "ok":
        err = meta.error.message if meta.error else None
        return "redo", f"previous baseline status {meta.status!r}" + (f": {err}" if err else "")
    if not (point.baseline_dir / COMPARISON).is_file():
        return "redo", f"{COMPARISON} missing"
    diff = _diff_keys(meta.baseline_settings.model_dump(mode="json", exclude_none=True),
                      options.signature())
    if diff:
        return "conflict", f"finished baseline used different settings ({', '.join(diff)})"
    return "finished", f"{BASELINE_METADATA} status ok and {COMPARISON} present"
