"""The PINN model: physics layer == simulator, gradients, group merge isolation, losses, units."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ptychotrace.config import LossWeights, MeasurementContract, resolve_scenario
from ptychotrace.data.container import build_grouped, train_input_gain, truth_patches
from ptychotrace.model.losses import LossNormaliser, amplitude_mae, compute_losses, poisson_nll
from ptychotrace.model.network import NetworkConfig, PtychoNet, network_macs
from ptychotrace.model.pinn import PINN, estimate_amplitude_reference
from ptychotrace.physics.stitching import merge_group
from ptychotrace.simulate import simulate

TINY = {"simulation.N": 32, "simulation.object_size": 96, "simulation.base_total_images": 48,
        "simulation.buffer": 8.0, "grouping.group_count": 16}


@pytest.fixture(scope="module")
def noiseless():
    cfg, _, _ = resolve_scenario("gs1_ideal", {**TINY, "simulation.poisson_noise": False},
                                 use_profile=False)
    ds, _ = simulate(cfg.simulation)
    return ds


@pytest.mark.parametrize("contract", ["counts", "legacy_v1"])
def test_physics_layer_matches_simulator(noiseless, contract):
    ds = noiseless
    idx = np.arange(ds.n_patterns)
    obj = truth_patches(ds.obj, ds.xcoords[idx], ds.ycoords[idx], ds.patch_size)
    model = PINN(NetworkConfig(N=32, amp_ref=1.0), ds.probe, contract, ds.dose_scale)
    with torch.no_grad():
        _, lam = model.physics(torch.as_tensor(obj)[:, None])
    lam = lam[:, 0].double() / model.target_factor
    ref = torch.as_tensor(ds.counts, dtype=torch.float64)
    rel = float((lam - ref).abs().max() / ref.abs().max())
    assert rel < 1e-6, rel
    # the check can fail: a 0.1% probe error is caught
    model.probe.mul_(1.001)
    with torch.no_grad():
        _, lam2 = model.physics(torch.as_tensor(obj)[:, None])
    assert float((lam2[:, 0].double() / model.target_factor - ref).abs().max() / ref.abs().max()) > 1e-4


@pytest.mark.parametrize("gridsize,support", [(1, "central"), (2, "full")])
def test_gradients_reach_every_parameter(noiseless, gridsize, support):
    ds = noiseless
    c = gridsize**2
    model = PINN(NetworkConfig(N=32, gridsize=gridsize, amp_ref=2.0, object_support=support), ds.probe)
    torch.manual_seed(0)
    x = torch.rand(3, c, 32, 32)
    dx = torch.tensor([[-2.5, 2.0, -1.5, 3.0][:c]] * 3, dtype=torch.float64)
    dy = torch.tensor([[-1.0, -2.0, 2.5, 1.5][:c]] * 3, dtype=torch.float64)
    out = model(x, dx, dy)
    counts = torch.as_tensor(ds.counts[:3 * c].reshape(3, c, 32, 32))
    norm = LossNormaliser.from_counts(ds.counts)
    losses = compute_losses(out, counts, norm, LossWeights(nll=1, mae=0.5))
    losses["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().max()) > 0, f"no gradient reaches {name}"
    assert model.probe.grad is None  # the probe is fixed physics, not a parameter


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 5), st.integers(0, 10_000))
def test_group_merge_never_mixes_groups(n_groups, seed):
    rng = np.random.default_rng(seed)
    n = 16
    patches = torch.as_tensor(rng.normal(size=(n_groups, 4, n, n)) + 1j * rng.normal(
        size=(n_groups, 4, n, n))).to(torch.complex64)
    dx = torch.as_tensor(rng.uniform(-3, 3, (n_groups, 4)))
    dy = torch.as_tensor(rng.uniform(-3, 3, (n_groups, 4)))
    ref, _ = merge_group(patches, dx, dy)
    k = int(rng.integers(n_groups))
    changed = patches.clone()
    changed[k] = changed[k] * 3 + 1
    out, _ = merge_group(changed, dx, dy)
    others = [g for g in range(n_groups) if g != k]
    torch.testing.assert_close(out[others], ref[others])
    assert not torch.allclose(out[k], ref[k])
    # and the model's physics layer inherits it: each group's counts depend on that group only
    probe = torch.ones(n, n, dtype=torch.complex64)
    model = PINN(NetworkConfig(N=16, gridsize=2, amp_ref=1.0), probe.numpy())
    _, lam_ref = model.physics(patches, dx, dy)
    _, lam = model.physics(changed, dx, dy)
    torch.testing.assert_close(lam[others], lam_ref[others])


def test_amplitude_head_covers_object_range_and_phase_is_bounded():
    net = PtychoNet(NetworkConfig(N=32, amp_ref=2.8))
    with torch.no_grad():
        for p in net.amp_decoder.head.parameters():
            p.zero_()
        amp, phase = net(torch.rand(2, 1, 32, 32))
    assert torch.allclose(amp, torch.full_like(amp, 2.8), rtol=1e-5)   # neutral output = amp_ref
    z = torch.linspace(-10, 10, 101)
    out = 2.8 * torch.nn.functional.softplus(z) / math.log(2)
    assert float(out.min()) < 0.6 and float(out.max()) > 5.5          # spans the lines object
    assert float(phase.abs().max()) <= math.pi


def test_poisson_nll_definition_and_dose_invariance():
    rng = np.random.default_rng(1)
    lam = torch.as_tensor(rng.uniform(0.5, 50, (4, 8, 8)))
    i = torch.as_tensor(rng.poisson(lam.numpy()).astype(np.float64))
    nll = poisson_nll(lam, i, mean_counts=1.0)
    naive = (lam - i * torch.log(lam)).sum((-2, -1))
    sat = torch.where(i > 0, i - i * torch.log(i.clamp_min(1e-300)), torch.zeros_like(i)).sum((-2, -1))
    torch.testing.assert_close(nll, naive - sat)
    # same relative misfit at 1e9x the dose: normalised loss stays O(1) and the same
    small = poisson_nll(lam * 1.2, lam, float(lam.sum((-2, -1)).mean()))
    big = poisson_nll(lam * 1.2e9, lam * 1e9, float((lam * 1e9).sum((-2, -1)).mean()))
    torch.testing.assert_close(small, big, rtol=1e-6, atol=0)
    assert 1e-3 < float(big.mean()) < 1
    # zeros in the data and lam below the clamp are finite
    assert torch.isfinite(poisson_nll(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4), 1.0)).all()
    assert torch.isfinite(amplitude_mae(torch.zeros(2, 4, 4), torch.ones(2, 4, 4), 1.0)).all()


def test_amplitude_reference_from_data(noiseless):
    ds = noiseless
    ref = estimate_amplitude_reference(float(ds.counts.reshape(len(ds.counts), -1).sum(1).mean()),
                                       ds.probe)
    truth = float(np.abs(ds.obj).mean())
    assert abs(ref / truth - 1) < 0.25


def test_network_input_and_legacy_contract_units(noiseless):
    ds = noiseless
    gd = build_grouped(ds, "train", 1, 8, 4, 0, train_input_gain(ds))
    m_counts = PINN(NetworkConfig(N=32, amp_ref=1.0), ds.probe, MeasurementContract.counts)
    m_legacy = PINN(NetworkConfig(N=32, amp_ref=1.0), ds.probe, "legacy_v1", ds.dose_scale)
    m_legacy.net.load_state_dict(m_counts.net.state_dict())
    x = torch.as_tensor(gd.X)
    with torch.no_grad():
        a, b = m_counts(x), m_legacy(x)
    torch.testing.assert_close(a.obj, b.obj)                      # same object, object units
    torch.testing.assert_close(b.lam * ds.dose_scale**2, a.lam, rtol=1e-4, atol=1e-2)
    with pytest.raises(ValueError, match="dose scale"):
        PINN(NetworkConfig(N=32, amp_ref=1.0), ds.probe, "legacy_v1", None)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_initial_network_output_depends_on_its_input(activation):
    """Issue #5: with PyTorch's default conv init the ReLU signal shrinks ~6x in second moment per
    layer while the random biases do not, so the untrained N=64 network is a constant map (the
    across-pattern std of its amplitude was ~2e-6 x amp_ref) and training starts on the flat-object
    attractor. He init with zero biases must give an input-dependent first prediction that stays
    near the neutral object amp_ref."""
    torch.manual_seed(0)
    net = PtychoNet(NetworkConfig(N=64, amp_ref=2.9, object_support="central",
                                  activation=activation))
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    central_peak = torch.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 20.0)   # diffraction-like input
    x = 3.0 * central_peak + 0.3 * torch.rand(8, 1, 64, 64, generator=g)
    with torch.no_grad():
        amp, _ = net(x)
    centre = amp[..., 16:48, 16:48]                      # the predicted (central) support
    across_patterns = float(centre.std(dim=0).mean()) / 2.9
    assert across_patterns > 1e-4, across_patterns       # old init: ~1.5e-6
    assert abs(float(centre.mean()) / 2.9 - 1.0) < 0.2   # still close to the neutral object
    assert float(centre.std()) / 2.9 < 0.2               # and not a random high-contrast object
    for name, p in net.named_parameters():
        if name.endswith("bias"):
            assert float(p.detach().abs().max()) == 0.0, name


VARIANTS = [("plain", "none", False), ("unet", "none", False), ("plain", "group", False),
            ("plain", "none", True), ("unet", "group", True)]


@pytest.mark.parametrize("arch,norm,residual", VARIANTS)
@pytest.mark.parametrize("gridsize,support", [(1, "central"), (2, "full")])
def test_network_variants_shapes_and_gradients(arch, norm, residual, gridsize, support):
    """Every issue-#12 variant maps (B, C, N, N) to (B, C, N, N) object patches, keeps the neutral
    output amp_ref with a zeroed amplitude head, and every parameter gets a gradient."""
    c = gridsize**2
    torch.manual_seed(0)
    net = PtychoNet(NetworkConfig(N=32, gridsize=gridsize, amp_ref=2.0, object_support=support,
                                  arch=arch, norm=norm, residual=residual))
    x = torch.rand(3, c, 32, 32)
    amp, phase = net(x)
    assert amp.shape == phase.shape == (3, c, 32, 32)
    (amp.square().mean() + phase.square().mean()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and float(p.grad.abs().max()) > 0, name
    with torch.no_grad():
        for p in net.amp_decoder.head.parameters():
            p.zero_()
        amp0, _ = net(x)
    inside = amp0[..., 8:24, 8:24]
    assert torch.allclose(inside, torch.full_like(inside, 2.0), rtol=1e-5)


def test_plain_network_keeps_the_pre_issue12_layout():
    """Checkpoints written before the variants existed (no arch/norm/residual keys, Sequential
    blocks) still load into the default network."""
    old = {"N": 32, "gridsize": 1, "width": 1, "amp_ref": 1.5, "object_support": "full"}
    cfg = NetworkConfig.from_dict(old)
    assert (cfg.arch, cfg.norm, cfg.residual) == ("plain", "none", False)
    keys = set(PtychoNet(cfg).state_dict())
    assert {"encoder.0.0.weight", "encoder.0.2.weight", "amp_decoder.blocks.0.2.bias",
            "amp_decoder.head.weight"} <= keys
    assert not any("proj" in k or "body" in k for k in keys)
    unet = set(PtychoNet(NetworkConfig(N=32, arch="unet", norm="group", residual=True)).state_dict())
    assert any("proj" in k for k in unet) and unet != keys
    with pytest.raises(ValueError, match="arch"):
        PtychoNet(NetworkConfig(N=32, arch="vit"))
    with pytest.raises(ValueError, match="norm"):
        PtychoNet(NetworkConfig(N=32, norm="batch"))


@pytest.mark.parametrize("arch,support", [("plain", "central"), ("unet", "full")])
def test_network_macs_match_torch_flop_counter(arch, support):
    """network_macs counts the convolutions' multiply-accumulates; torch's FlopCounterMode counts
    2 FLOPs per MAC for convolutions (everything else it counts is excluded here)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = NetworkConfig(N=64, arch=arch, object_support=support, amp_ref=1.0)
    macs = network_macs(cfg)
    net = PtychoNet(cfg).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(torch.zeros(1, 1, 64, 64))
    conv_flops = sum(v for k, v in fc.get_flop_counts()["Global"].items() if "convolution" in str(k))
    assert macs["macs_per_group"] * 2 == conv_flops
    assert macs["parameters"] == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("gridsize,support", [(1, "central"), (2, "full")])
def test_bfloat16_network_matches_float32_with_float32_heads(gridsize, support):
    """Mixed precision changes the hidden arithmetic only: same weights, float32 outputs, and
    amplitude/phase within bfloat16 rounding of the float32 network (8-bit mantissa: ~0.4% per
    op; 1e-2 relative bounds ~10 layers of it on any CPU, emulated or native)."""
    torch.manual_seed(3)
    cfg = dict(N=32, gridsize=gridsize, amp_ref=2.0, object_support=support)
    full = PtychoNet(NetworkConfig(**cfg))
    mixed = PtychoNet(NetworkConfig(**cfg, precision="bfloat16"))
    mixed.load_state_dict(full.state_dict())
    x = torch.rand(4, gridsize * gridsize, 32, 32)
    with torch.no_grad():
        (a32, p32), (a16, p16) = full(x), mixed(x)
    assert a16.dtype == p16.dtype == torch.float32
    assert float((a32 - a16).abs().max()) <= 1e-2 * float(a32.abs().max())
    assert float((p32 - p16).abs().max()) <= 5e-2
    assert not torch.equal(a32, a16)          # the hidden layers really ran in bfloat16
    d = NetworkConfig(**cfg, precision="bfloat16").to_dict()
    assert NetworkConfig.from_dict(d).precision == "bfloat16"
    assert NetworkConfig.from_dict({k: v for k, v in d.items() if k != "precision"}).precision \
        == "float32"                           # checkpoints from before the option
    with pytest.raises(ValueError, match="precision"):
        PtychoNet(NetworkConfig(N=32, precision="float16"))


def test_group_merge_with_central_support_ignores_the_zero_padding():
    """gridsize 2 with the central object support: each patch defines only its central N/2, and
    the merge weights it by that window, so a pixel inside one patch's support and outside the
    others' keeps that patch's value exactly; a window of ones dilutes it with their zeros."""
    from ptychotrace.physics.stitching import merge_group

    n, half = 16, 8
    q = (n - half) // 2
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    patches = torch.zeros(1, 4, n, n)
    patches[0, :, q:q + half, q:q + half] = values[:, None, None]
    dx = torch.tensor([[-5.0, 5.0, -5.0, 5.0]], dtype=torch.float64)   # supports disjoint,
    dy = torch.tensor([[-5.0, -5.0, 5.0, 5.0]], dtype=torch.float64)   # whole patches overlap
    with_support, canvas = merge_group(patches, dx, dy, support=half)
    ones, _ = merge_group(patches, dx, dy)
    # pixel (row 8, col 11) of patch 0 is in its own support and in patch 1's zero padding only
    assert float(with_support[0, 0, 8, 11]) == pytest.approx(1.0)
    assert float(ones[0, 0, 8, 11]) == pytest.approx(0.5)    # diluted by patch 1's zeros
    # the merged canvas is a convex combination of the patch values where any support reaches
    inside = canvas[0][canvas[0] != 0]
    assert float(inside.min()) >= 1.0 - 1e-6 and float(inside.max()) <= 4.0 + 1e-6


def test_spectral_block_is_an_exact_global_mix():
    """SpectralBlock (model/network.py): with K = identity at every frequency the orthonormal
    rfft2 -> irfft2 round trip returns x, so the block is x + act(x + W x); with W = 0 and a
    random K, one input position changes every output position (global receptive field), which a
    3x3 conv cannot do."""
    from ptychotrace.model.network import SpectralBlock

    torch.manual_seed(1)
    c, n = 4, 8
    blk = SpectralBlock(c, n, "relu")
    x = torch.randn(2, c, n, n)
    with torch.no_grad():
        blk.weight.zero_()
        blk.weight[..., 0] = torch.eye(c)[:, :, None, None]
        expect = x + torch.relu(x + blk.pointwise(x))
        assert torch.allclose(blk(x), expect, atol=1e-5)
        blk.pointwise.weight.zero_()
        blk.pointwise.bias.zero_()
        blk.weight.normal_()
        x0 = torch.zeros(1, c, n, n)
        x1 = x0.clone()
        x1[0, :, 0, 0] = 1.0
        spec = lambda t: torch.fft.irfft2(torch.einsum(  # noqa: E731
            "bixy,ioxy->boxy", torch.fft.rfft2(t, norm="ortho"),
            torch.view_as_complex(blk.weight)), s=(n, n), norm="ortho")
        d = (spec(x1) - spec(x0)).abs()
        assert float(d[0, :, n - 1, n - 1].max()) > 1e-3   # the far corner sees the impulse
        assert (d.amax(dim=1) > 1e-6).all()
    with pytest.raises(ValueError, match="8x8"):
        blk(torch.zeros(1, c, 4, 4))


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_network_with_spectral_blocks_trains_and_round_trips(precision):
    """spectral_blocks adds Fourier blocks at the bottleneck: shapes unchanged, every parameter
    (K included, which starts at 0) gets a gradient, the config round-trips through the
    checkpoint dict, and older checkpoints (no key) load as spectral_blocks=0."""
    torch.manual_seed(0)
    cfg = NetworkConfig(N=32, gridsize=2, amp_ref=1.0, object_support="central",
                        spectral_blocks=2, precision=precision)
    net = PtychoNet(cfg)
    assert len(net.spectral) == 2 and net.spectral[0].size == 8     # 32 px / 2^2 stages
    x = torch.rand(3, 4, 32, 32)
    amp, phase = net(x)
    assert amp.shape == phase.shape == (3, 4, 32, 32) and amp.dtype == torch.float32
    (amp.square().mean() + phase.square().mean()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and float(p.grad.abs().max()) > 0, name
    d = cfg.to_dict()
    assert NetworkConfig.from_dict(d) == cfg
    assert NetworkConfig.from_dict({k: v for k, v in d.items() if k != "spectral_blocks"}) \
        .spectral_blocks == 0
    with pytest.raises(ValueError, match="spectral_blocks"):
        PtychoNet(NetworkConfig(N=32, spectral_blocks=-1))


def test_log_input_transform_is_monotone_and_fixes_zero_and_one():
    """input_transform 'log': the first layer sees log1p(X / p) / log1p(1 / p), p = the X of a
    one-photon pixel: 0 -> 0, 1 -> 1, monotone, and a pixel 300x below X = 1 (the high-q
    pixels at 1e9 photons) is lifted far above its linear value; the amplitude network is
    unchanged by the new fields, and bad values are refused."""
    torch.manual_seed(0)
    p = 1e-3
    cfg = NetworkConfig(N=32, amp_ref=1.0, input_transform="log", input_photon=p)
    assert NetworkConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("input_transform", "input_photon")}
    assert NetworkConfig.from_dict(old).input_transform == "amplitude"
    net = PtychoNet(cfg)
    seen = []
    net.encoder[0].register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    x = torch.tensor([0.0, 1.0 / 300, 0.5, 1.0, 4.0]).repeat(32 * 32 // 5 + 1)[:32 * 32]
    net(x.reshape(1, 1, 32, 32))
    y = seen[0].flatten()[:5]
    assert y[0] == 0 and abs(float(y[3]) - 1.0) < 1e-6
    assert bool((y[1:] > y[:-1]).all()) and float(y[1]) > 20 * (1.0 / 300)
    plain = PtychoNet(NetworkConfig(N=32, amp_ref=1.0))
    assert set(plain.state_dict()) == set(net.state_dict())
    with pytest.raises(ValueError, match="input_transform"):
        PtychoNet(NetworkConfig(N=32, input_transform="sqrt"))
    with pytest.raises(ValueError, match="input_photon"):
        PtychoNet(NetworkConfig(N=32, input_transform="log", input_photon=0.0))


def test_position_channels_feed_the_group_geometry_to_the_first_layer():
    """position_channels: the first layer sees X and, per pattern, two constant planes
    dx / OFFSET_SCALE_PX and dy / OFFSET_SCALE_PX. So the output depends on the offsets (a
    network without the planes cannot tell two geometries apart), missing or misshapen offsets
    are refused, gridsize 1 is refused, and the config round-trips (old checkpoints: off)."""
    from ptychotrace.model.network import OFFSET_SCALE_PX

    torch.manual_seed(0)
    cfg = NetworkConfig(N=32, gridsize=2, amp_ref=1.0, position_channels=True)
    net = PtychoNet(cfg).eval()
    assert net.encoder[0][0].in_channels == 12                # 4 patterns + 4 dx + 4 dy planes
    seen = []
    net.encoder[0].register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    x = torch.rand(2, 4, 32, 32)
    dx = torch.tensor([[-4.0, 4.0, -4.0, 4.0], [-8.0, 8.0, 0.0, 0.0]])
    dy = torch.tensor([[-4.0, -4.0, 4.0, 4.0], [0.0, 0.0, -8.0, 8.0]])
    with torch.no_grad():
        a1, p1 = net(x, dx, dy)
        a2, p2 = net(x, dy, dx)                     # the same patterns, another geometry
    inp = seen[0]
    assert torch.equal(inp[:, :4], x)
    assert torch.allclose(inp[:, 4:8], (dx / OFFSET_SCALE_PX)[:, :, None, None].expand(2, 4, 32, 32))
    assert torch.allclose(inp[:, 8:], (dy / OFFSET_SCALE_PX)[:, :, None, None].expand(2, 4, 32, 32))
    assert float((a1 - a2).abs().max()) > 0 and float((p1 - p2).abs().max()) > 0
    with pytest.raises(ValueError, match="group offsets"):
        net(x)
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        net(x, dx[:, :2], dy[:, :2])
    with pytest.raises(ValueError, match="gridsize > 1"):
        PtychoNet(NetworkConfig(N=32, gridsize=1, position_channels=True))
    d = cfg.to_dict()
    assert NetworkConfig.from_dict(d) == cfg
    assert not NetworkConfig.from_dict({k: v for k, v in d.items()
                                        if k != "position_channels"}).position_channels
    # without the option the network ignores offsets entirely (the default path is unchanged)
    plain = PtychoNet(NetworkConfig(N=32, gridsize=2, amp_ref=1.0)).eval()
    with torch.no_grad():
        assert torch.equal(plain(x, dx, dy)[0], plain(x)[0])


def _structured_probe(n: int, seed: int = 0) -> np.ndarray:
    """A disk with a random smooth phase (no symmetry), in sqrt(photons)-like units."""
    yy, xx = np.mgrid[:n, :n] - n / 2
    r = np.hypot(xx, yy)
    rng = np.random.default_rng(seed)
    phase = 0.6 * (xx / n) ** 2 * rng.normal() + 0.8 * np.sin(xx / 3.0 + yy / 5.0)
    return (300.0 * (r < n / 4) * np.exp(1j * phase)).astype(np.complex64)


def test_backprop_input_is_exact_for_a_flat_object_and_dose_invariant():
    """input_transform 'backprop': for a noise-free flat object of amplitude a the one-step
    estimate is a |P|^2 / (|P|^2 + eps max|P|^2) with zero imaginary part (the flat object's
    far-field phase is the exact phase then); scaling the probe by k and the counts by k^2 (a
    dose change) leaves the estimate unchanged; the first layer sees X then the estimate's real
    and imaginary parts; a wrong probe is refused and the config round-trips."""
    from ptychotrace.model.network import BACKPROP_EPS
    from ptychotrace.physics.forward import expected_counts

    n, a, gain = 32, 2.7, 0.37
    probe = _structured_probe(n)
    cfg = NetworkConfig(N=n, gridsize=2, amp_ref=a, input_transform="backprop", input_photon=gain)
    assert NetworkConfig.from_dict(cfg.to_dict()) == cfg and cfg.input_channels == 12
    net = PtychoNet(cfg, probe).eval()
    assert net.encoder[0][0].in_channels == 12
    flat = torch.full((1, 4, n, n), a, dtype=torch.complex64)
    x = torch.sqrt(expected_counts(torch.as_tensor(probe), flat)) * gain
    est = net.backprop(x)
    power = np.abs(probe) ** 2
    want = a * power / (power + BACKPROP_EPS * power.max())
    for c in range(4):
        np.testing.assert_allclose(est[0, c].numpy(), want, atol=1e-4 * a)
        assert float(est[0, 4 + c].abs().max()) < 1e-4 * a
    # an object with structure: the estimate follows the dose-scaled probe and counts together
    rng = np.random.default_rng(1)
    obj = torch.as_tensor((1 + rng.random((1, 4, n, n))) * np.exp(1j * rng.random((1, 4, n, n)))
                          ).to(torch.complex64)
    counts = expected_counts(torch.as_tensor(probe), obj)
    k = 7.0
    net_k = PtychoNet(cfg, probe * np.float32(k)).eval()
    torch.testing.assert_close(net.backprop(torch.sqrt(counts) * gain),
                               net_k.backprop(torch.sqrt(counts * k * k) * gain), rtol=1e-4, atol=1e-4)
    seen = []
    net.encoder[0].register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    with torch.no_grad():
        net(x)
    torch.testing.assert_close(seen[0][:, :4], x)
    torch.testing.assert_close(seen[0][:, 4:], est)
    with pytest.raises(ValueError, match="needs the probe"):
        PtychoNet(cfg)
    with pytest.raises(ValueError, match="probe must be"):
        PtychoNet(cfg, probe[:16, :16])
    with pytest.raises(ValueError, match="non-zero"):
        PtychoNet(cfg, np.zeros((n, n), np.complex64))
    # the buffers derive from the probe: not in the state dict (same keys as the amplitude input
    # apart from the wider first layer)
    assert set(net.state_dict()) == set(PtychoNet(NetworkConfig(N=n, gridsize=2)).state_dict())
    # with the offset planes too: X, the estimate, then dx and dy planes (5 channels a pattern)
    both = PtychoNet(NetworkConfig(N=n, gridsize=2, amp_ref=a, input_transform="backprop",
                                   input_photon=gain, position_channels=True), probe).eval()
    assert both.encoder[0][0].in_channels == 20
    dx = torch.tensor([[-2.0, 2.0, -2.0, 2.0]])
    seen.clear()
    both.encoder[0].register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    with torch.no_grad():
        both(x, dx, dx.flip(1))
    torch.testing.assert_close(seen[0][:, 4:12], est)
    torch.testing.assert_close(seen[0][0, 12:16, 0, 0], dx[0] / 8.0)


def test_unrolled_stage_data_consistency_keeps_an_exact_object_and_corrects_a_wrong_one():
    """unrolled_stages: the data-consistency step returns a patch that already explains the
    measured amplitudes unchanged, moves a wrong patch's far-field amplitudes onto the measured
    ones where the probe is strong, keeps it where the probe is zero; the stages are separate
    networks (their own weights), propagate precision and layout, need the backprop input, and
    the config round-trips (older checkpoints: 0)."""
    from ptychotrace.physics.forward import expected_counts

    n, gain = 32, 0.5
    probe = _structured_probe(n, seed=3)
    rng = np.random.default_rng(2)
    obj = torch.as_tensor((1 + rng.random((2, 1, n, n))) * np.exp(1j * rng.random((2, 1, n, n)))
                          ).to(torch.complex64)
    x = torch.sqrt(expected_counts(torch.as_tensor(probe), obj)) * gain
    cfg = NetworkConfig(N=n, amp_ref=1.5, input_transform="backprop", input_photon=gain,
                        unrolled_stages=1)
    assert NetworkConfig.from_dict(cfg.to_dict()) == cfg
    assert NetworkConfig.from_dict({k: v for k, v in cfg.to_dict().items()
                                    if k != "unrolled_stages"}).unrolled_stages == 0
    net = PtychoNet(cfg, probe).eval()
    back = net.backprop.consistent(x, obj)
    torch.testing.assert_close(torch.complex(back[:, :1], back[:, 1:]), obj, rtol=1e-4, atol=1e-4)
    wrong = obj * torch.as_tensor(np.exp(0.5j * rng.random((2, 1, n, n)))).to(torch.complex64)
    fixed = net.backprop.consistent(x, wrong)
    fixed = torch.complex(fixed[:, :1], fixed[:, 1:])
    strong = torch.as_tensor(np.abs(probe) > 0)
    err_before = (torch.sqrt(expected_counts(torch.as_tensor(probe), wrong)) * gain - x).abs().mean()
    err_after = (torch.sqrt(expected_counts(torch.as_tensor(probe), fixed)) * gain - x).abs().mean()
    assert float(err_after) < 0.5 * float(err_before)
    torch.testing.assert_close(fixed[..., ~strong], wrong[..., ~strong])
    # two networks, one pass; the output depends on the second stage's weights
    assert len(net.unrolled) == 1 and net.unrolled[0].cfg.unrolled_stages == 0
    with torch.no_grad():
        a1, _ = net(x)
        net.unrolled[0].amp_decoder.head.bias.add_(1.0)
        a2, _ = net(x)
    assert float((a2 - a1).abs().min()) > 0
    net.set_compute_precision("bfloat16")
    net.set_conv_memory_format(torch.channels_last)
    assert net.unrolled[0].compute_precision == "bfloat16" and net.unrolled[0].channels_last
    with pytest.raises(ValueError, match="needs input_transform 'backprop'"):
        PtychoNet(NetworkConfig(N=n, unrolled_stages=1))


def test_backprop_estimate_carries_the_twin_ambiguity_of_a_symmetric_probe():
    """With a real, centro-symmetric probe and a real object the pattern cannot tell the patch
    from its twin (docs/physics.md), and the one-step estimate is itself twin-symmetric (to
    1-2 %: the Wiener division and the flat far field's weak high-angle phase are not exactly
    symmetric); it adds no orientation the data do not hold. The modelled zone-plate probe
    breaks the symmetry (its estimate is 30-60 % away from either twin)."""
    from ptychotrace.infer.twin import twin_flip_mode, twin_of
    from ptychotrace.model.network import BackpropInput
    from ptychotrace.physics.forward import expected_counts
    from ptychotrace.physics.probe import focused_probe, ideal_probe

    for n in (32, 64):
        rng = np.random.default_rng(4)
        obj = torch.as_tensor(1 + rng.random((3, 1, n, n))).to(torch.complex64)
        for probe, symmetric in ((200 * ideal_probe(n), True), (200 * focused_probe(n), False)):
            mode = twin_flip_mode(probe)
            assert (mode is not None) == symmetric
            e = BackpropInput(probe, 1.0)(torch.sqrt(expected_counts(torch.as_tensor(probe), obj)))
            est = torch.complex(e[:, :1], e[:, 1:])
            rel = {m: float((twin_of(est, m) - est).abs().mean() / est.abs().mean())
                   for m in ("flip", "roll")}
            if symmetric:
                assert rel[mode] < 0.02, rel
            else:
                assert min(rel.values()) > 0.2, rel
