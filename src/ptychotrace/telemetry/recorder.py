"""The run recorder: one object handed down the pipeline that collects every telemetry block and
writes ``run_metadata.json`` (telemetry.md), plus the run-directory policy and provenance.

Life cycle::

    backup = prepare_run_dir(out, force=args.force)      # refuses a non-empty dir unless force
    rec = RunRecorder(out, scenario="gs1_ideal")
    rec.set_block("config", cfg.to_dict())
    rec.set_block("provenance", collect_provenance(seeds, dataset_source, device="cpu"))
    with rec.stage("simulate"):
        ...
        rec.add_intensity_stage("raw_diffraction", "simulate", np.sqrt(counts), {"count": n})
    with rec.stage("train"):
        ...
    rec.write_intensity_stats(normalize_gain=gain, intensity_scale=...)
    rec.finalize()                                        # status "ok"

Failure: an exception escaping ``stage(name)`` records ``status: "failed"``, ``failed_stage``
(the innermost stage), ``error`` {type, message, traceback}, writes ``run_metadata.json`` with every
block gathered so far, and re-raises. After each stage that completes, the recorder also writes
a *partial* record (``status: "failed"``, ``partial: true``, ``error.type: "Incomplete"``), so a
process killed without a Python exception still leaves an honest record; ``finalize()``
overwrites it. Status stays within the contract's ``ok`` | ``failed``.

Telemetry only observes: the recorder deep-copies blocks when they are set and computes array
statistics without modifying arrays.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .stats import array_stats
from .writers import write_json, write_text

SCHEMA_VERSION = "1.0"
RUN_METADATA = "run_metadata.json"
INTENSITY_STATS_JSON = "intensity_stats.json"
INTENSITY_STATS_MD = "intensity_stats.md"

#: Top-level keys of run_metadata.json owned by the recorder; blocks may not use them.
RESERVED_KEYS = frozenset({
    "schema_version", "status", "partial", "scenario", "timestamp", "finished_at",
    "elapsed_seconds", "stage_seconds", "failed_stage", "error", "artifacts", "artifacts_missing",
})


def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _iso(t: _dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Run-directory policy
# --------------------------------------------------------------------------------------------
class RunDirExistsError(FileExistsError):
    """The output directory already holds files and ``force`` was not given."""


def prepare_run_dir(path: str | os.PathLike, force: bool = False) -> Path | None:
    """Make ``path`` an empty run directory; return where an old one was moved, or None.

    - missing or empty directory: used as is;
    - non-empty directory and ``force`` False: ``RunDirExistsError`` (nothing is touched);
    - non-empty directory and ``force`` True: the whole directory is renamed to
      ``<dir>.bak-<UTC timestamp>`` (suffix ``-1``, ``-2``... if taken), so nothing already
      written is lost, and a fresh empty directory is created;
    - an existing non-directory at ``path``: ``NotADirectoryError``.
    """
    run_dir = Path(path)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"output path {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not force:
            raise RunDirExistsError(
                f"output directory {run_dir} already exists and is not empty; choose another "
                f"--output-dir, or pass --force to move it aside to {run_dir.name}.bak-<timestamp> "
                "(nothing is deleted)")
        stamp = _utc_now().strftime("%Y%m%dT%H%M%SZ")
        backup = run_dir.with_name(f"{run_dir.name}.bak-{stamp}")
        k = 0
        while backup.exists():
            k += 1
            backup = run_dir.with_name(f"{run_dir.name}.bak-{stamp}-{k}")
        os.replace(run_dir, backup)
        run_dir.mkdir(parents=True)
        return backup
    run_dir.mkdir(parents=True, exist_ok=True)
    return None


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def _git_state(repo_dir: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding ``repo_dir``; (None, None) outside a checkout."""
    if "site-packages" in repo_dir.parts:  # an installed copy: the enclosing repo is not ours
        return None, None
    commit = _git(["rev-parse", "HEAD"], repo_dir)
    if commit is None:
        return None, None
    status = _git(["status", "--porcelain", "--untracked-files=no"], repo_dir)
    return commit.strip(), (None if status is None else bool(status.strip()))


def collect_provenance(seeds: Mapping[str, Any], dataset_source: Mapping[str, Any], *,
                       device: str | None = None, repo_dir: str | os.PathLike | None = None
                       ) -> dict[str, Any]:
    """The ``provenance`` block: package version, git commit/dirty, environment, seeds, data.

    ``seeds``: e.g. {object_seed, sim_seed, training_seed}. ``dataset_source``: {type
    "simulated" | "npz_file", path, sha256} (``file_sha256`` computes the hash). ``device``: the
    device training actually ran on; detected (cuda if available, else cpu) when None.
    ``git_commit``/``git_dirty`` are None when the package is not in a git checkout.
    """
    from .. import __version__

    here = Path(repo_dir) if repo_dir is not None else Path(__file__).resolve().parent
    commit, dirty = _git_state(here)
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "torch": None, "scipy": None, "device": device, "threads": None,
        "cpu_count": os.cpu_count(),
    }
    try:
        import scipy
        env["scipy"] = scipy.__version__
    except ImportError:
        pass
    try:
        import torch
        env["torch"] = torch.__version__
        env["threads"] = int(torch.get_num_threads())
        if device is None:
            env["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        if device is None:
            env["device"] = "cpu"
    return {
        "package_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "environment": env,
        "seeds": dict(seeds),
        "dataset_source": dict(dataset_source),
    }


# --------------------------------------------------------------------------------------------
# The recorder
# --------------------------------------------------------------------------------------------
def _error_block(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


class RunRecorder:
    """Collects the blocks of one run and writes ``run_metadata.json`` atomically.

    ``output_dir`` must exist (see ``prepare_run_dir``). ``autosave``: write a partial record
    after each completed stage (cheap: small JSON).
    """

    def __init__(self, output_dir: str | os.PathLike, scenario: str, *, autosave: bool = True):
        self.output_dir = Path(output_dir)
        if not self.output_dir.is_dir():
            raise NotADirectoryError(f"run directory {self.output_dir} does not exist; "
                                     "create it with prepare_run_dir() first")
        self.scenario = str(scenario)
        self.autosave = autosave
        self._started = _utc_now()
        self._t0 = time.perf_counter()
        self._blocks: dict[str, Any] = {}
        self._stage_seconds: dict[str, float] = {}
        self._active: list[str] = []
        self._artifacts: list[str] = []
        self._intensity_stages: list[dict[str, Any]] = []
        self._failure: dict[str, Any] | None = None
        self._finished: _dt.datetime | None = None

    # ---- blocks ------------------------------------------------------------------------------
    def set_block(self, name: str, block: Any) -> None:
        """Store (a deep copy of) a top-level block, replacing any previous one of that name."""
        if name in RESERVED_KEYS:
            raise ValueError(f"'{name}' is written by the recorder itself; choose another name")
        self._blocks[name] = copy.deepcopy(block)

    def update_block(self, name: str, **fields: Any) -> None:
        """Merge ``fields`` into the dict block ``name`` (created when absent)."""
        current = self._blocks.get(name, {})
        if not isinstance(current, dict):
            raise TypeError(f"block '{name}' is not a dict; use set_block to replace it")
        self.set_block(name, {**current, **fields})

    def get_block(self, name: str, default: Any = None) -> Any:
        """A copy of block ``name`` (``default`` when absent)."""
        return copy.deepcopy(self._blocks.get(name, default))

    @property
    def stage_seconds(self) -> dict[str, float]:
        return dict(self._stage_seconds)

    @property
    def failure(self) -> dict[str, Any] | None:
        return copy.deepcopy(self._failure)

    # ---- stages ------------------------------------------------------------------------------
    @contextmanager
    def stage(self, name: str) -> Iterator[RunRecorder]:
        """Time a stage into ``stage_seconds[name]`` (accumulated if entered again).

        On an exception: record the failure (innermost stage wins), write run_metadata.json
        with status failed and every block gathered so far, then re-raise.
        """
        start = time.perf_counter()
        self._active.append(name)
        try:
            yield self
        except BaseException as exc:
            self._add_time(name, time.perf_counter() - start)
            self._active.pop()
            if self._failure is None:
                self.record_failure(name, exc)
            try:
                self._write("failed")
            except Exception as write_exc:  # never mask the original error
                exc.add_note(f"also failed to write {RUN_METADATA}: {write_exc!r}")
            raise
        self._add_time(name, time.perf_counter() - start)
        self._active.pop()
        if self.autosave:
            self.write_partial()

    def _add_time(self, name: str, seconds: float) -> None:
        self._stage_seconds[name] = self._stage_seconds.get(name, 0.0) + float(seconds)

    def record_failure(self, stage: str | None, exc: BaseException) -> None:
        """Record a failure by hand (``stage()`` does this for you)."""
        self._failure = {"failed_stage": stage, "error": _error_block(exc)}

    # ---- artifacts and intensity stages -------------------------------------------------------
    def add_artifact(self, relpath: str | os.PathLike) -> str:
        """Register a written file, relative to the run directory (POSIX form; deduplicated)."""
        p = Path(relpath)
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(self.output_dir.resolve())
            except ValueError:
                raise ValueError(f"artifact {relpath} is outside the run directory "
                                 f"{self.output_dir}") from None
        if ".." in p.parts or str(p) in ("", "."):
            raise ValueError(f"artifact path must be a file inside the run directory, got {relpath}")
        rel = p.as_posix()
        if rel not in self._artifacts:
            self._artifacts.append(rel)
        return rel

    @property
    def artifacts(self) -> list[str]:
        return list(self._artifacts)

    def add_intensity_stage(self, name: str, source: str, array: np.ndarray | None = None,
                            metadata: Mapping[str, Any] | None = None, *,
                            stats: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record one stage of the scale chain (intensity_stats.json ``stages``).

        Give either ``array`` (NumPy; ``array_stats`` is computed, the array is not kept) or
        precomputed ``stats``. ``metadata``: {count, gridsize, group_limit} (missing ones are
        None) plus anything else, e.g. ``domain`` ("amplitude" | "counts") and ``split``.
        """
        if any(s["name"] == name for s in self._intensity_stages):
            raise ValueError(f"intensity stage '{name}' was already recorded")
        if (array is None) == (stats is None):
            raise ValueError("give exactly one of array= or stats=")
        st = array_stats(array) if array is not None else copy.deepcopy(dict(stats))
        meta = {"count": None, "gridsize": None, "group_limit": None, **(metadata or {})}
        entry = {"name": name, "source": source, "stats": st, "metadata": meta}
        self._intensity_stages.append(entry)
        return copy.deepcopy(entry)

    @property
    def intensity_stages(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._intensity_stages)

    def write_intensity_stats(self, *, normalize_gain: float | None = None,
                              intensity_scale: Mapping[str, Any] | None = None,
                              training_labels: Mapping[str, Any] | None = None,
                              label_vs_truth_analysis: Mapping[str, Any] | None = None,
                              ) -> dict[str, Any]:
        """Build intensity_stats.json/.md from the recorded stages, write both, register them.

        ``training_labels``/``label_vs_truth_analysis`` default to the recorder's blocks of the
        same name. ``intensity_scale``: the output of ``scale_chain.intensity_scale_block``.
        """
        from .scale_chain import build_intensity_stats, render_intensity_stats_md

        d = build_intensity_stats(
            self._intensity_stages, normalize_gain=normalize_gain, intensity_scale=intensity_scale,
            training_labels=(training_labels if training_labels is not None
                             else self._blocks.get("training_labels")),
            label_vs_truth_analysis=(label_vs_truth_analysis if label_vs_truth_analysis is not None
                                     else self._blocks.get("label_vs_truth_analysis")))
        write_json(self.output_dir / INTENSITY_STATS_JSON, d)
        write_text(self.output_dir / INTENSITY_STATS_MD, render_intensity_stats_md(d))
        self.add_artifact(INTENSITY_STATS_JSON)
        self.add_artifact(INTENSITY_STATS_MD)
        return d

    # ---- writing -----------------------------------------------------------------------------
    def metadata(self, status: str) -> dict[str, Any]:
        """The run_metadata.json content for ``status`` (not written)."""
        md: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "status": status,
            "scenario": self.scenario,
            "timestamp": _iso(self._started),
            "finished_at": None if self._finished is None else _iso(self._finished),
            "elapsed_seconds": time.perf_counter() - self._t0,
            "stage_seconds": dict(self._stage_seconds),
        }
        if self._failure is not None:
            md.update(copy.deepcopy(self._failure))
        elif status == "failed" and self._finished is not None:
            md["failed_stage"] = None
            md["error"] = {"type": "Failed", "message": "finalize(status='failed') was called "
                           "without a recorded error", "traceback": None}
        elif status == "failed":  # partial record of a run still in progress
            md["partial"] = True
            md["failed_stage"] = self._active[-1] if self._active else None
            md["error"] = {"type": "Incomplete",
                           "message": "the run had not reached finalize() when this record was "
                                      "written; if it is still the latest record, the process "
                                      "ended without reporting an error",
                           "traceback": None}
        md.update(copy.deepcopy(self._blocks))
        md["artifacts"] = list(self._artifacts)
        if self._finished is not None:
            missing = [a for a in self._artifacts if not (self.output_dir / a).exists()]
            if missing:
                md["artifacts_missing"] = missing
        return md

    def _write(self, status: str) -> dict[str, Any]:
        md = self.metadata(status)
        write_json(self.output_dir / RUN_METADATA, md)
        return md

    def write_partial(self) -> Path:
        """Write the record as it stands (status failed + partial, or the recorded failure)."""
        self._write("failed")
        return self.output_dir / RUN_METADATA

    def finalize(self, status: str = "ok") -> dict[str, Any]:
        """Write the final run_metadata.json and return its content.

        ``status`` is "ok" or "failed". Finalising "ok" after a recorded failure is refused.
        """
        if status not in ("ok", "failed"):
            raise ValueError(f"status must be 'ok' or 'failed', got {status!r}")
        if status == "ok" and self._failure is not None:
            raise RuntimeError(f"cannot finalize as ok: stage '{self._failure['failed_stage']}' "
                               "failed")
        self._finished = _utc_now()
        return self._write(status)
