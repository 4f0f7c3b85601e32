"""Checkpoints: everything needed to reproduce the model's predictions, in one file.

A checkpoint (``torch.save`` of plain types and tensors; loadable with ``weights_only=True``):

- ``format`` / ``format_version``: "ptychotrace-pinn" / 1
- ``model_state``: network weights (the probe is stored separately, below)
- ``network``: NetworkConfig.to_dict() -- N, gridsize, width, filters, amp_ref, object_support,
  the activation ranges
- ``physics``: contract, physical probe (complex64 tensor, sqrt(photons)), probe units
- ``scales``: dose scale (value, mode), input gain (value, split), loss normaliser (mean counts and
  mean amplitude sum per pattern, split), amp_ref -- all frozen from the training split and reused
  unchanged at inference
- ``config``: the whole RunConfig as a dict; ``loss_weights``
- ``metadata``: epoch, global step, kind ('best' | 'last' | 'initial'), val loss, time, versions
- ``training_state`` (last checkpoint only): optimizer, scheduler, RNG states, history -- for resume
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..model.network import NetworkConfig
from ..model.pinn import PINN
from ..telemetry.writers import atomic_path

FORMAT = "ptychotrace-pinn"
FORMAT_VERSION = 1
BEST, LAST = "best.pt", "last.pt"
CHECKPOINT_DIR = Path("train_outputs") / "checkpoints"


def checkpoint_payload(model: PINN, *, config: dict, scales: dict, metadata: dict,
                       training_state: dict | None = None) -> dict[str, Any]:
    core = model.module if hasattr(model, "module") else model
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model_state": {k: v.detach().cpu().clone() for k, v in core.net.state_dict().items()},
        "network": core.net_cfg.to_dict(),
        "physics": {"contract": core.contract.value,
                    "probe": (core.probe / core_probe_factor(core)).detach().cpu().clone(),
                    "probe_units": "sqrt(photons) (physical probe)",
                    "dose_scale": core.dose_scale},
        "scales": scales, "config": config,
        "metadata": {"saved_unix": time.time(), "ptychotrace_version": __version__,
                     "torch_version": str(torch.__version__), **metadata},
        "training_state": training_state,
    }


def core_probe_factor(core: PINN) -> float:
    from ..model.pinn import contract_factors

    return contract_factors(core.contract, core.dose_scale)[0]


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Atomic write (temporary file + rename): a crash never leaves a half-written checkpoint."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A checkpoint file, or a directory holding one (run dir, train_outputs/ or checkpoints/)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"model path not found: {path}")
    name = BEST if which == "best" else LAST
    for cand in (path / CHECKPOINT_DIR / name, path / "checkpoints" / name, path / name,
                 path / CHECKPOINT_DIR / LAST, path / "checkpoints" / LAST, path / LAST):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"no checkpoint ({name} or {LAST}) under {path} (looked in "
                            f"{CHECKPOINT_DIR}, checkpoints/ and the directory itself)")


def load_checkpoint(path: str | Path, which: str = "best") -> dict[str, Any]:
    file = resolve_checkpoint(path, which)
    try:
        from torch.torch_version import TorchVersion

        with torch.serialization.safe_globals([TorchVersion]):
            ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{file}: cannot read checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{file}: not a ptychotrace PINN checkpoint")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{file}: checkpoint format {ckpt.get('format_version')} is not supported "
                         f"(expected {FORMAT_VERSION})")
    ckpt["path"] = str(file)
    return ckpt


def model_from_checkpoint(ckpt: dict, device: torch.device | str = "cpu") -> PINN:
    """Rebuild the PINN exactly as trained (same probe, contract, scales) in eval mode; the
    checkpoint dict (config, scales, metadata) rides along as ``model.checkpoint``."""
    phys = ckpt["physics"]
    model = PINN(NetworkConfig.from_dict(ckpt["network"]), phys["probe"].numpy(),
                 phys["contract"], phys.get("dose_scale"))
    model.net.load_state_dict(ckpt["model_state"])
    model.checkpoint = {k: v for k, v in ckpt.items() if k not in ("model_state", "training_state")}
    return model.to(device).eval()


def load_model(path: str | Path, device: torch.device | str = "cpu", which: str = "best") -> PINN:
    """Load a trained model from a checkpoint file or run directory (``which`` = best | last).
    ``model.checkpoint`` holds the stored config, scales, network and metadata."""
    return model_from_checkpoint(load_checkpoint(path, which), device)
