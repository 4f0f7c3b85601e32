"""Detector masks in the physics: a masked pixel's value changes nothing (loss and gradient)."""

from __future__ import annotations

import numpy as np
import pytest
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


def _poked_dataset(ds, valid, value):
    from ptychotrace.data.dataset import Dataset

    counts = ds.counts.copy()
    counts[:, ~valid] = value
    return Dataset(ds.xcoords, ds.ycoords, counts, ds.probe, ds.obj, ds.scan_index, ds.split,
                   ds.metadata, valid)


def test_training_step_ignores_masked_pixel_values(tiny_dataset, tiny_sim_overrides):
    """Input gain, loss normaliser, network input, loss and every parameter gradient of one
    training batch are bit-identical whatever the masked pixels hold."""
    from ptychotrace.config import resolve_scenario
    from ptychotrace.train.prep import _batch, build_model, prepare_training_data

    ds, _ = tiny_dataset
    cfg, _, _ = resolve_scenario("gs1_ideal", tiny_sim_overrides, use_profile=False)
    valid = np.ones((ds.patch_size,) * 2, bool)
    valid[ds.patch_size // 2, ds.patch_size // 2 + 1] = False    # next to DC: a bright pixel
    valid[:, 0] = False
    results = []
    for value in (0.0, 1e7):
        d = _poked_dataset(ds, valid, value)
        data = prepare_training_data(cfg, d)
        torch.manual_seed(0)
        model = build_model(cfg, d, data)
        b = _batch(data.train, np.arange(4), model, torch.device("cpu"), need_labels=False)
        out = model(b["x"], b["dx"], b["dy"])
        loss = compute_losses(out, b["counts"], data.normaliser, cfg.training.loss_weights,
                              valid=b["valid"])["loss"]
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((data.input_gain, data.normaliser, data.train.X, loss.detach(), grads))
    (g0, n0, x0, l0, gr0), (g1, n1, x1, l1, gr1) = results
    assert g0 == g1 and n0 == n1 and np.array_equal(x0, x1) and torch.equal(l0, l1)
    assert len(gr0) > 0 and all(torch.equal(a, b) for a, b in zip(gr0, gr1, strict=True))


def _mask_for(ds):
    valid = np.ones((ds.patch_size,) * 2, bool)
    valid[ds.patch_size // 2, ds.patch_size // 2] = False       # the DC pixel: the brightest
    valid[3, :] = False
    return valid


@pytest.mark.parametrize("algorithm,likelihood", [("rpie", "amplitude"), ("lsqml", "poisson")])
def test_baseline_ignores_masked_pixel_values(tiny_dataset, algorithm, likelihood):
    from ptychotrace.baseline.solver import reconstruct

    ds, _ = tiny_dataset
    valid = _mask_for(ds)
    res = [reconstruct(_poked_dataset(ds, valid, v), iterations=3, algorithm=algorithm,
                       likelihood=likelihood, group_limit=16, holdout=0.1, patience=None)
           for v in (0.0, 123.0, 5e6)]
    for r in res[1:]:
        np.testing.assert_array_equal(r.obj, res[0].obj)
        assert r.cost_history == res[0].cost_history
    # and the mask matters: the unmasked reconstruction differs
    plain = reconstruct(ds, iterations=3, algorithm=algorithm, likelihood=likelihood,
                        group_limit=16, holdout=0.1, patience=None)
    assert not np.array_equal(plain.obj, res[0].obj)


def test_refinement_ignores_masked_pixel_values(tiny_dataset):
    from ptychotrace.infer.predict import refine_object

    ds, _ = tiny_dataset
    valid = _mask_for(ds)
    idx = ds.indices("test")[:16]
    init = np.ones(ds.obj.shape, np.complex64)
    covered = np.ones(ds.obj.shape, bool)
    mean = float((ds.counts[idx] * valid).sum(axis=(1, 2)).mean())
    outs = []
    for v in (0.0, 7.5, 1e6):
        counts = _poked_dataset(ds, valid, v).counts[idx]
        obj, info = refine_object(init, covered, torch.as_tensor(ds.probe), counts, ds.xcoords[idx],
                                  ds.ycoords[idx], mean, 1.0, 4, 0.02, holdout=0.1, patience=None,
                                  smooth=False, refit=False, valid=valid)
        outs.append(obj)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
