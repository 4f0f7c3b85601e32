"""Physics-consistent refinement of the stitched object on the test data, stopped by a photon
hold-out. Defaults are InferenceConfig's (defined once there). Two methods
(``inference.refine_method``):

- ``lsqml``, :func:`refine_with_solver`: the iterative baseline's own solver
  (:func:`ptychotrace.baseline.reconstruct`, LSQ-ML with its preconditioner and step damping, the
  same hold-out, patience, refit and low-pass rules) started from the network's stitched object
  instead of a flat one. One solver for the baseline and the refinement.
- ``adam`` (default), :func:`refine_object`: Adam steps of the Poisson NLL on the object canvas.
  :class:`_Refinement` holds one problem (the start canvas, the fitted and held-out photons, the
  probe) and its named passes: one forward pass over all patterns, a replay of step segments, the
  hold-out fit with back-offs, and the run that records. Its many small steps and back-offs
  suit low doses; LSQ-ML's preconditioned steps suit high ones (measured in docs/benchmarks.md,
  "Refinement: the start and the solver").

Both start from :func:`start_object`."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..baseline import reconstruct
from ..config import InferenceConfig
from ..data.dataset import TEST, TRAIN, Dataset
from ..model.losses import poisson_nll
from ..physics.forward import expected_counts, extract_patches, pad_canvas, required_pad
from ..physics.holdout import choose_smoothing, holdout_reason, smooth_canvas, split_photons

_DEFAULTS = InferenceConfig.model_fields
#: Refinement defaults: InferenceConfig.refine_holdout / refine_patience / refine_backoffs.
REFINE_HOLDOUT = _DEFAULTS["refine_holdout"].default
REFINE_PATIENCE = _DEFAULTS["refine_patience"].default
REFINE_BACKOFFS = _DEFAULTS["refine_backoffs"].default
#: Step-size factor of a back-off (see refine_object).
REFINE_BACKOFF_FACTOR = 0.25

# --------------------------------------------------------------------------------------------
# Physics-consistent refinement of the stitched object on the test data
# --------------------------------------------------------------------------------------------
def start_object(init: np.ndarray, covered: np.ndarray, amp_scale: float) -> np.ndarray:
    """The refinement's start (H, W) complex64: the stitched network object where it is covered,
    elsewhere its complex mean over the covered pixels (``amp_scale`` if none is covered).

    Why the complex mean: the far-field amplitudes do not see a global phase, so a network
    trained on them returns its object with an arbitrary constant phase (2.5 rad measured on one
    model). The probe lights pixels outside the stitch windows' cover; a real fill there would
    put a phase step into every pattern, which the refinement then spends its steps on (measured
    in docs/benchmarks.md: amplitude SSIM 0.23 instead of 0.95 after 50 Adam steps)."""
    covered = np.asarray(covered, bool)
    fill = complex(init[covered].mean()) if covered.any() else complex(amp_scale)
    return np.where(covered, init, np.complex64(fill)).astype(np.complex64)


def only_these_as_test(ds: Dataset, pattern_index: np.ndarray) -> Dataset:
    """A view of ``ds`` whose test split is exactly the rows ``pattern_index`` (the patterns a
    prediction used), so that ``split="test"`` consumers see those and no others."""
    split = np.full(ds.n_patterns, TRAIN, dtype=np.asarray(ds.split).dtype)
    split[np.asarray(pattern_index)] = TEST
    return replace(ds, split=split)


def refine_with_solver(ds: Dataset, pattern_index: np.ndarray, probe: np.ndarray,
                       start: np.ndarray, cfg: InferenceConfig,
                       seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """The baseline's LSQ-ML solver on the patterns ``pattern_index`` (rows of ``ds``), started
    from ``start`` (H, W) complex (:func:`start_object`), at most ``cfg.refine_steps``
    iterations, with the refinement's hold-out, patience, refit and low-pass settings.
    ``probe``: (N, N) complex, the physical probe the network was trained with. Returns the
    (H, W) complex object (pixels the scan does not light keep their start) and the record."""
    view = replace(only_these_as_test(ds, pattern_index),
                   probe=np.asarray(probe, dtype=np.complex64))
    res = reconstruct(view, "test", iterations=int(cfg.refine_steps), algorithm="lsqml",
                      seed=seed, holdout=float(cfg.refine_holdout),
                      patience=cfg.refine_patience, refit=bool(cfg.refine_refit),
                      smooth=bool(cfg.refine_smooth), window=int(cfg.stitch_window), init=start)
    obj = np.where(res.illuminated, res.obj, start).astype(np.complex64)
    p = res.params
    record = {"applied": True, "method": "lsqml",
              "method_note": "the baseline's LSQ-ML solver started from the network's stitched "
                             "object (baseline/solver.py reconstruct(init=...))",
              "max_steps": int(cfg.refine_steps), "steps": int(res.iterations),
              "best_step": int(res.best_iteration), "stop_reason": res.stop_reason,
              "cost_first": float(res.cost_history[0]), "cost_last": float(res.cost_history[-1]),
              "cost_units": "the solver's fit cost per detector pixel (baseline/result.py)",
              "holdout": p["holdout"], "holdout_note": p["holdout_note"], "holdout_seed": seed,
              "patience": p["patience"], "holdout_history": [float(v) for v in
                                                             res.holdout_history],
              "holdout_units": "mean Poisson half-deviance of the held-out photons per detector "
                               "pixel",
              "refit_steps": int(res.refit_iterations), "smooth_sigma_px": p["smooth_sigma_px"],
              "smooth_scores": p["smooth_scores"], "smooth_note": p["smooth_note"],
              "step_history": [float(v) for v in res.step_history],
              "lsq_damping": p["lsq_damping"], "lsq_damping_photons": p["lsq_damping_photons"],
              "seconds": float(res.wall_time_s)}
    return obj, record


def refine_object(init: np.ndarray, covered_init: np.ndarray, probe: torch.Tensor,
                  counts: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray,
                  mean_counts: float, fill: float, steps: int, lr: float,
                  batch_size: int = 256, *, holdout: float = REFINE_HOLDOUT,
                  patience: int | None = REFINE_PATIENCE, seed: int = 0,
                  refit: bool = True, smooth: bool = True,
                  backoffs: int = REFINE_BACKOFFS,
                  valid: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """At most ``steps`` Adam steps of the training Poisson NLL w.r.t. the object canvas (H, W)
    complex, starting from the stitched PINN output (uncovered pixels start at ``fill``). Uses the
    same extractor and forward model as training; ``lr`` is relative to ``fill`` (the amp scale).

    Photon hold-out (``holdout`` > 0, integer counts): a fraction ``holdout`` of every pixel's
    photons is split off by binomial thinning (:mod:`ptychotrace.physics.holdout`, the baseline's
    code); the steps fit the rest (probe scaled by ``sqrt(1 - holdout)``) and the held-out photons'
    Poisson deviance is scored at every iterate 0..K from the same forward pass:

    1. early stopping: the iterate with the lowest held-out deviance is kept (0 steps = the
       network's object). After ``patience`` steps without improvement (None = never) the
       refinement backs off: it returns to that iterate and goes on with a step
       REFINE_BACKOFF_FACTOR times smaller (fresh Adam moments), at most ``backoffs`` times, then
       stops. At high dose the deviance keeps falling and nothing changes; at low dose the first
       steps overshoot into shot noise after a few iterations and the smaller steps go on from
       the best point (measured in docs/benchmarks.md);
    2. ``smooth``: a Gaussian low-pass of that iterate, its width chosen from
       ``holdout.SMOOTH_SIGMAS_PX`` by the same held-out deviance (0 = none). Shot noise that the fit
       absorbed raises the held-out deviance and a low-pass removes it, while at high dose any
       blur costs far more than it removes, so the width follows the dose from the data alone;
    3. ``refit``: the steps that led to the kept iterate (each segment at its own step size) are
       redone from the same start on *all* photons and the chosen low-pass applied to that, so
       the hold-out costs no photons (twice the refinement time).

    ``holdout`` = 0, or non-integer counts (recorded in ``holdout_note``), gives exactly the plain
    ``steps`` steps on all photons (the behaviour before the hold-out existed): no early stop, no
    low-pass. ``seed`` drives the thinning only. ``valid`` (N, N) bool, True = measured: masked
    pixels leave every likelihood sum."""
    problem = _Refinement(init, covered_init, probe, counts, xcoords, ycoords, mean_counts, fill,
                          batch_size, holdout=holdout, seed=seed, valid=valid)
    return problem.run(int(steps), lr, patience=patience, refit=refit, smooth=smooth,
                       backoffs=backoffs)


class _Refinement:
    """One refinement problem: the start canvas, the photons (fitted / held out), the probe."""

    def __init__(self, init, covered_init, probe, counts, xcoords, ycoords, mean_counts, fill,
                 batch_size, *, holdout, seed, valid):
        n = counts.shape[-1]
        self.n, self.pad, self.fill, self.batch_size = n, required_pad(n), fill, batch_size
        self.shape = init.shape
        counts = np.ascontiguousarray(counts, dtype=np.float32)
        self.mask = None
        if valid is not None:
            # masked pixels leave every sum below; 0 here only keeps their values out of the
            # hold-out decision and the thinning's random draws
            counts = np.where(valid, counts, np.float32(0))
            self.mask = torch.as_tensor(np.asarray(valid, bool))
        self.reason = holdout_reason(counts, holdout)
        self.start = np.where(covered_init, init, np.complex64(fill)).astype(np.complex64)
        self.xs = torch.as_tensor(xcoords + self.pad)
        self.ys = torch.as_tensor(ycoords + self.pad)
        self.all_counts, self.probe, self.mean_counts = torch.as_tensor(counts), probe, mean_counts
        self.holdout, self.seed = holdout, seed
        if self.reason is None:
            fit_np, held_np = split_photons(counts, holdout, seed)
            self.fit, self.held = torch.as_tensor(fit_np), torch.as_tensor(held_np)
            self.fit_probe = probe * math.sqrt(1.0 - holdout)
            self.fit_mean = mean_counts * (1.0 - holdout)
            self.ratio = holdout / (1.0 - holdout)         # E[held-out] / E[fitted]
        else:
            self.fit, self.held, self.fit_probe, self.fit_mean, self.ratio = (
                self.all_counts, None, probe, mean_counts, 0.0)
        self.n_pix = float(counts.size if self.mask is None
                           else counts.shape[0] * int(self.mask.sum()))

    @property
    def scored(self) -> bool:
        """Whether a photon hold-out scores the iterates."""
        return self.held is not None

    def new_param(self) -> torch.nn.Parameter:
        canvas = pad_canvas(torch.as_tensor(self.start), self.pad, value=self.fill).clone()
        return torch.nn.Parameter(torch.view_as_real(canvas).clone())

    def one_pass(self, param, cts, p, mc, grad: bool, score: bool) -> tuple[float, float]:
        """Fit loss over all patterns at the current object (its gradient accumulated into
        param when grad) and the held-out deviance per detector pixel (when score)."""
        total, held_sum, m = 0.0, 0.0, len(self.xs)
        for s in range(0, m, self.batch_size):
            sl = slice(s, s + self.batch_size)
            with torch.set_grad_enabled(grad):
                lam = expected_counts(p, extract_patches(torch.view_as_complex(param),
                                                         self.xs[sl], self.ys[sl], self.n))
                loss = poisson_nll(lam, cts[sl], mc, self.mask).sum() / m
                if grad:
                    loss.backward()
            total += float(loss.detach())
            if score:
                held_sum += float(poisson_nll(lam.detach() * self.ratio, self.held[sl], 1.0,
                                              self.mask).sum())
        return total, held_sum / self.n_pix

    def replay(self, path, cts, p, mc) -> tuple[torch.Tensor, list[float]]:
        """The object after the given segments [(steps, Adam lr)] from the start, on cts, and the
        fit loss before each step."""
        param = self.new_param()
        losses = []
        for n_steps, seg_lr in path:
            opt = torch.optim.Adam([param], lr=seg_lr)
            for _ in range(n_steps):
                opt.zero_grad(set_to_none=True)
                losses.append(self.one_pass(param, cts, p, mc, True, False)[0])
                opt.step()
        return torch.view_as_complex(param.detach()), losses

    def held_deviance(self, canvas) -> float:
        """Mean Poisson half-deviance of the held-out photons per detector pixel at canvas."""
        return self.one_pass(torch.view_as_real(canvas), self.fit, self.fit_probe, self.fit_mean,
                             False, True)[1]

    def fit_with_holdout(self, max_steps, lr, patience, backoffs):
        """Adam steps on the fitted photons, scored on the held-out ones, with early stopping
        and back-offs. Returns (best object, its path, held-out history, fit losses, stop
        reason, back-offs used)."""
        param = self.new_param()
        seg_lr = lr * self.fill
        opt = torch.optim.Adam([param], lr=seg_lr)
        losses: list[float] = []
        held_hist: list[float] = []
        done_path: list[tuple[int, float]] = []     # finished segments of the current path
        seg_steps, taken, used = 0, 0, 0
        best, best_path, best_held = None, [], math.inf
        last_event = 0                               # pass index of the last improvement/back-off
        stop = "steps"
        while True:
            can_step = taken < max_steps
            opt.zero_grad(set_to_none=True)
            total, held_dev = self.one_pass(param, self.fit, self.fit_probe, self.fit_mean,
                                            can_step, True)
            held_hist.append(held_dev)
            if held_dev < best_held:
                best_held, last_event = held_dev, len(held_hist) - 1
                best = param.detach().clone()
                best_path = done_path + ([(seg_steps, seg_lr)] if seg_steps else [])
            if not can_step:
                break
            if patience is not None and len(held_hist) - 1 - last_event >= patience:
                if used >= backoffs:
                    stop = f"hold-out deviance did not improve for {patience} steps"
                    break
                used += 1                            # back off: return to the best iterate
                with torch.no_grad():
                    param.copy_(best)
                seg_lr *= REFINE_BACKOFF_FACTOR
                opt = torch.optim.Adam([param], lr=seg_lr)
                done_path, seg_steps = list(best_path), 0
                last_event = len(held_hist) - 1
                continue
            losses.append(total)                     # fit loss before the step
            opt.step()
            seg_steps += 1
            taken += 1
        if best is None:                             # non-finite deviance from the start
            best = param.detach().clone()
        return torch.view_as_complex(best), best_path, held_hist, losses, stop, used

    def run(self, steps: int, lr: float, *, patience, refit, smooth, backoffs):
        """Fit (with the hold-out where it applies), low-pass, refit: (object (H, W), record)."""
        sigma, smooth_scores = 0.0, []
        if self.scored:
            final, path, held_hist, losses, stop, used = self.fit_with_holdout(
                steps, lr, patience, backoffs)
            if smooth:
                sigma, smooth_scores = choose_smoothing(final, self.held_deviance)
        else:                                      # plain steps on all photons (no hold-out)
            path = [(steps, lr * self.fill)]
            final, losses = self.replay(path, self.all_counts, self.probe, self.mean_counts)
            held_hist, stop, used = [], "steps", 0
        refit_steps = 0
        best_k = sum(k for k, _ in path)
        if self.scored and refit and best_k > 0:
            final, _ = self.replay(path, self.all_counts, self.probe, self.mean_counts)
            refit_steps = best_k
        final = smooth_canvas(final, sigma)
        h, w = self.shape
        out = final[self.pad:self.pad + h, self.pad:self.pad + w].numpy().copy()
        scored, fill = self.scored, self.fill
        record: dict[str, Any] = {
            "applied": True, "max_steps": int(steps), "lr_relative": lr, "steps": len(losses),
            "best_step": int(best_k), "stop_reason": stop,
            "nll_first": losses[0] if losses else None,
            "nll_last": losses[-1] if losses else None,
            "holdout": float(self.holdout) if scored else 0.0, "holdout_note": self.reason,
            "holdout_seed": int(self.seed) if scored else None,
            "patience": patience if scored else None,
            "backoffs_used": int(used), "backoffs_max": int(backoffs) if scored else 0,
            "best_path": [[int(k), float(step / fill)] for k, step in path],
            "best_path_units": "[steps, Adam step relative to the amplitude scale] per segment",
            "holdout_history_len": len(held_hist), "holdout_history": held_hist,
            "holdout_units": "mean Poisson half-deviance of the held-out photons per detector "
                             "pixel" if scored else None,
            "refit_steps": refit_steps,
            "smooth_sigma_px": float(sigma),
            "smooth_scores": [[float(a), float(b)] for a, b in smooth_scores],
            "smooth_note": None if scored and smooth else
            ("disabled (smooth=False)" if scored else "needs the hold-out"),
        }
        return out, record
