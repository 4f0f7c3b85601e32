"""Detector masks in the physics: a masked pixel's value changes nothing (loss and gradient)."""

from __future__ import annotations

import numpy as np
import torch

from ptychotrace.config import LossWeights
from ptychotrace.model.losses import LossNormaliser, amplitude_mae, compute_losses, poisson_nll


def _case(seed: int = 0, n: int = 8, p: int = 3):
    rng = np.random.default_rng(seed)
    lam = torch.tensor(rng.uniform(0.5, 20, (p, n, n)), dtype=torch.float64, requires_grad=True)
    counts = torch.tensor(rng.poisson(8.0, (p, n, n)), dtype=torch.float32)
    valid = torch.ones(n, n, dtype=torch.bool)
    valid[2, 3] = valid[5, 5] = valid[0, 0] = False
    return lam, counts, valid


def _poke(counts: torch.Tensor, valid: torch.Tensor, value: float) -> torch.Tensor:
    c = counts.clone()
    c[:, ~valid] = value
    return c


def test_loss_value_and_gradient_ignore_masked_pixels():
    lam, counts, valid = _case()
    ref_val, ref_grad = None, None
    for value in (0.0, 3.0, 1e9, float("nan"), float("inf")):
        lam.grad = None
        c = _poke(counts, valid, value)
        loss = poisson_nll(lam, c, 100.0, valid).sum() + amplitude_mae(lam, c, 10.0, valid).sum()
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(lam.grad).all()
        if ref_val is None:
            ref_val, ref_grad = loss.detach().clone(), lam.grad.clone()
        else:
            assert torch.equal(loss.detach(), ref_val)
            assert torch.equal(lam.grad, ref_grad)
    # the masked pixels' gradient is exactly zero; an unmasked pixel's is not
    assert (ref_grad[:, ~valid] == 0).all() and (ref_grad[:, valid] != 0).any()


def test_mask_changes_the_loss_and_none_is_the_unmasked_path():
    lam, counts, valid = _case(1)
    full = poisson_nll(lam, counts, 100.0)
    assert torch.equal(full, poisson_nll(lam, counts, 100.0, torch.ones_like(valid)))
    assert not torch.equal(full, poisson_nll(lam, counts, 100.0, valid))  # the mask does something


def test_normaliser_ignores_masked_pixels():
    _, counts, valid = _case(2)
    a = LossNormaliser.from_counts(_poke(counts, valid, 5.0).numpy(), valid=valid.numpy())
    b = LossNormaliser.from_counts(_poke(counts, valid, 1e6).numpy(), valid=valid.numpy())
    assert a == b


def test_compute_losses_takes_the_mask():
    lam, counts, valid = _case(3)

    class Out:
        pass

    out = Out()
    out.lam = lam
    norm = LossNormaliser(100.0, 10.0)
    w = LossWeights(nll=1.0, mae=0.5)
    a = compute_losses(out, _poke(counts, valid, 0.0), norm, w, valid=valid)
    b = compute_losses(out, _poke(counts, valid, 7e4), norm, w, valid=valid)
    assert torch.equal(a["loss"], b["loss"])
