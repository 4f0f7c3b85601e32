"""Atomic writers for run artifacts: JSON, text and float32 ``.npy``.

Every writer writes to a hidden temporary file in the destination directory and then
``os.replace``-s it onto the final name, so a reader sees either the old file or the complete new
one, never a half-written file, and a crash leaves no partial artifact under the final name.
Parent directories are created as needed.

JSON follows the telemetry contract: indent 2, UTF-8, and no NaN/Inf. ``sanitize`` turns NumPy
scalars and arrays, paths, enums, dataclasses and pydantic models into plain JSON values and
replaces non-finite floats by ``None``; ``write_json`` then serialises with ``allow_nan=False``.
So that a ``null`` is never unexplained, ``write_json`` adds (for a dict payload) a top-level
``non_finite_values`` block mapping the JSON path of each replaced value to what it was
("nan", "inf", "-inf"), unless the caller passes ``annotate=False``; it returns the same mapping.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any

import numpy as np

NON_FINITE_KEY = "non_finite_values"


def _describe_non_finite(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def sanitize(obj: Any, replaced: dict[str, str] | None = None, _path: str = "$") -> Any:
    """Plain-JSON copy of ``obj``; non-finite floats become ``None``.

    ``replaced``, when given, receives ``{json_path: "nan" | "inf" | "-inf"}`` for each
    replacement. Raises ``TypeError`` naming the JSON path for values with no JSON form.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, enum.Enum):
        return sanitize(obj.value, replaced, _path)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        if math.isfinite(x):
            return x
        if replaced is not None:
            replaced[_path] = _describe_non_finite(x)
        return None
    if isinstance(obj, (complex, np.complexfloating)):
        raise TypeError(f"{_path}: complex value {obj!r} has no JSON form; record amplitude/phase")
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, np.ndarray):
        if np.iscomplexobj(obj):
            raise TypeError(f"{_path}: complex array has no JSON form; record amplitude/phase")
        return sanitize(obj.tolist(), replaced, _path)
    if isinstance(obj, Mapping):
        return {str(k): sanitize(v, replaced, f"{_path}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v, replaced, f"{_path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return [sanitize(v, replaced, f"{_path}[{i}]") for i, v in enumerate(sorted(obj, key=str))]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sanitize(dataclasses.asdict(obj), replaced, _path)
    if hasattr(obj, "model_dump") and callable(obj.model_dump):  # pydantic v2 models
        return sanitize(obj.model_dump(mode="json"), replaced, _path)
    raise TypeError(f"{_path}: value of type {type(obj).__qualname__} has no JSON form")


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on clean exit it is renamed onto ``path``.

    For writers that want a file name (``savefig``, ``torch.save``). On error the temporary file
    is removed and ``path`` is untouched. ``suffix`` defaults to the final name's suffix so that
    tools which infer a format from the extension keep working.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.tmp-",
                                    suffix=final.suffix if suffix is None else suffix,
                                    dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` (fsync before the rename)."""
    final = Path(path)
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return final


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text."""
    if not isinstance(text, str):
        raise TypeError(f"write_text takes str, got {type(text).__qualname__}")
    return write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any, *, annotate: bool = True) -> tuple[str, dict[str, str]]:
    """Serialise like ``write_json`` without writing; returns (text, replaced-values map)."""
    replaced: dict[str, str] = {}
    clean = sanitize(obj, replaced)
    if annotate and replaced and isinstance(clean, dict):
        note = {"note": "non-finite floats were written as null; value was as listed",
                "values": dict(replaced)}
        clean[NON_FINITE_KEY] = note
    text = json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return text, replaced


def write_json(path: str | os.PathLike, obj: Any, *, annotate: bool = True) -> dict[str, str]:
    """Atomically write ``obj`` as JSON (see the module docstring).

    Returns ``{json_path: "nan" | "inf" | "-inf"}`` for the values written as ``null``.
    """
    text, replaced = dumps_json(obj, annotate=annotate)
    write_text(path, text)
    return replaced


def write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Atomically write a real array as float32 ``.npy`` (no pickles)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"write_npy takes a numpy.ndarray, got {type(array).__qualname__}")
    if np.iscomplexobj(array):
        raise TypeError("write_npy writes real float32 arrays; save amplitude and phase separately")
    final = Path(path)
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array, dtype=np.float32), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
    return final
