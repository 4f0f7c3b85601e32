"""Physics properties: Parseval, extraction vs slicing, adjointness, stitching round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptychotrace.physics import forward, probe, scaling
from ptychotrace.physics.objects import lines_object
from ptychotrace.physics.stitching import merge_group, overlap_average, stitch_to_object_frame

rng = np.random.default_rng(0)


def crandn(*shape) -> torch.Tensor:
    return torch.from_numpy((rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
                            .astype(np.complex128))


def test_parseval_expected_counts_equal_illuminated_energy():
    p = crandn(32, 32)
    patches = crandn(5, 32, 32)
    lam = forward.expected_counts(p, patches)
    energy = (p * patches).abs().square().sum(dim=(-2, -1))
    torch.testing.assert_close(lam.sum(dim=(-2, -1)), energy, rtol=1e-10, atol=0)


def test_far_field_puts_dc_at_centre_and_inverts():
    psi = torch.ones(16, 16, dtype=torch.complex128)
    f = forward.far_field(psi)
    assert f.abs().argmax().item() == 8 * 16 + 8  # DC at (N//2, N//2)
    torch.testing.assert_close(forward.inverse_far_field(forward.far_field(crandn(3, 16, 16))).shape,
                               torch.Size([3, 16, 16]))
    x = crandn(3, 16, 16)
    torch.testing.assert_close(forward.inverse_far_field(forward.far_field(x)), x)


def test_integer_shift_extraction_equals_slicing():
    obj = crandn(40, 50)
    xs = torch.tensor([8.0, 20.0, 41.0])
    ys = torch.tensor([8.0, 31.0, 12.0])
    out = forward.extract_patches(obj, xs, ys, 16)
    for k in range(3):
        x, y = int(xs[k]), int(ys[k])
        torch.testing.assert_close(out[k], obj[y - 8:y + 8, x - 8:x + 8])


def test_half_pixel_extraction_is_the_neighbour_average():
    obj = crandn(30, 30)
    out = forward.extract_patches(obj, torch.tensor([12.5]), torch.tensor([12.0]), 8)[0]
    expected = 0.5 * (obj[8:16, 8:16] + obj[8:16, 9:17])
    torch.testing.assert_close(out, expected)


def test_extraction_outside_canvas_is_refused():
    with pytest.raises(ValueError, match="outside"):
        forward.extract_patches(crandn(20, 20), torch.tensor([3.0]), torch.tensor([10.0]), 8)


@pytest.mark.parametrize("batched", [False, True])
def test_extract_and_scatter_are_adjoint(batched):
    n, h, w = 8, 30, 34
    if batched:
        obj = crandn(3, h, w)
        xs = torch.from_numpy(rng.uniform(5, w - 6, (3, 4)))
        ys = torch.from_numpy(rng.uniform(5, h - 6, (3, 4)))
        p = crandn(3, 4, n, n)
    else:
        obj = crandn(h, w)
        xs = torch.from_numpy(rng.uniform(5, w - 6, 7))
        ys = torch.from_numpy(rng.uniform(5, h - 6, 7))
        p = crandn(7, n, n)
    lhs = torch.vdot(forward.extract_patches(obj, xs, ys, n).reshape(-1), p.reshape(-1))
    rhs = torch.vdot(obj.reshape(-1), forward.scatter_patches(p, xs, ys, (h, w)).reshape(-1))
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


def test_extraction_gradient_is_the_adjoint_scatter():
    """The custom backward (scatter) agrees with numerical differentiation, real and complex."""
    xs, ys = torch.tensor([6.3, 9.75, 7.0]), torch.tensor([5.5, 8.2, 9.0])
    for dtype in (torch.float64, torch.complex128):
        obj = torch.randn(16, 17, dtype=dtype, requires_grad=True)
        assert torch.autograd.gradcheck(lambda o: forward.extract_patches(o, xs, ys, 6), (obj,))
    batched = torch.randn(2, 16, 17, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda o: forward.extract_patches(o, xs[None].repeat(2, 1), ys[None].repeat(2, 1), 6),
        (batched,))


def test_patches_touching_the_canvas_edge_are_exact():
    """Integer positions whose last row/column is the canvas edge need no +1 tap."""
    obj = crandn(20, 24)
    n = 8
    out = forward.extract_patches(obj, torch.tensor([20.0, 4.0]), torch.tensor([16.0, 4.0]), n)
    torch.testing.assert_close(out[0], obj[12:20, 16:24])
    torch.testing.assert_close(out[1], obj[0:8, 0:8])
    edge = forward.extract_patches(obj, torch.tensor([19.5]), torch.tensor([16.0]), n)[0]
    torch.testing.assert_close(edge, 0.5 * (obj[12:20, 15:23] + obj[12:20, 16:24]))


def test_far_field_of_product_matches_far_field_convention():
    probe, patches = crandn(16, 16), crandn(5, 16, 16)
    torch.testing.assert_close(forward.far_field_of_product(probe, patches),
                               forward.far_field(probe * patches))
    odd = crandn(3, 15, 15)
    torch.testing.assert_close(forward.far_field_of_product(torch.ones(15, 15, dtype=odd.dtype), odd),
                               forward.far_field(odd))


def test_far_field_is_adjoint_of_its_inverse():
    a, b = crandn(16, 16), crandn(16, 16)
    lhs = torch.vdot(forward.far_field(a).reshape(-1), b.reshape(-1))
    rhs = torch.vdot(a.reshape(-1), forward.inverse_far_field(b).reshape(-1))
    torch.testing.assert_close(lhs, rhs)


def test_stitching_ground_truth_patches_reproduces_truth_on_covered_region():
    truth = torch.from_numpy(lines_object(64, seed=3))
    xs = torch.from_numpy(rng.integers(0, 64, 200).astype(np.float64))
    ys = torch.from_numpy(rng.integers(0, 64, 200).astype(np.float64))
    pad = forward.required_pad(16)
    patches = forward.extract_patches(forward.pad_canvas(truth, pad), xs + pad, ys + pad, 16)
    st = stitch_to_object_frame(patches, xs, ys, (64, 64), window_size=6)
    assert 0.5 < st.coverage_fraction <= 1.0
    cov = st.covered
    torch.testing.assert_close(st.image[cov], truth[cov], rtol=1e-5, atol=1e-5)
    assert torch.all(st.image[st.weight == 0] == 0)


def test_overlap_average_of_extracted_patches_is_identity_where_covered():
    # scatter(extract(o)) / scatter(1) == o: extraction and merge are adjoint up to the overlap
    # normalisation (integer offsets make bilinear weights exact).
    canvas = crandn(2, 24, 24)
    xs = torch.tensor([[9.0, 14.0, 12.0], [10.0, 11.0, 15.0]])
    ys = torch.tensor([[9.0, 10.0, 14.0], [12.0, 9.0, 13.0]])
    patches = forward.extract_patches(canvas, xs, ys, 8)
    st = overlap_average(patches, xs, ys, (24, 24), torch.ones(8, 8, dtype=torch.float64))
    torch.testing.assert_close(st.image[st.covered], canvas[st.covered])


def test_merge_group_never_mixes_groups():
    # Two groups in one batch, each a different constant: every re-extracted patch keeps its
    # own group's value, even though the groups' offsets overlap in canvas coordinates.
    c, n = 4, 8
    patches = torch.stack([torch.full((c, n, n), 1.0 + 0j), torch.full((c, n, n), 5.0 + 0j)])
    dx = torch.tensor([[-2.0, 2.0, -2.0, 2.0], [-1.5, 1.5, -1.5, 1.5]])
    dy = torch.tensor([[-2.0, -2.0, 2.0, 2.0], [-1.5, -1.5, 1.5, 1.5]])
    merged_patches, canvases = merge_group(patches, dx, dy)
    torch.testing.assert_close(merged_patches[0], torch.full((c, n, n), 1.0 + 0j))
    torch.testing.assert_close(merged_patches[1], torch.full((c, n, n), 5.0 + 0j))
    assert torch.all(canvases[0].real <= 1.0 + 1e-6)  # confined: no border blow-up


def test_ideal_probe_matches_spec_geometry():
    p = probe.ideal_probe(64)
    radius = np.sqrt((np.abs(p) > 0.5).sum() / np.pi)
    assert abs(radius - 10.9) < 0.3  # physics.md section 4: "radius about 10.9 px at N=64"
    np.testing.assert_allclose(p, p[::-1, ::-1], atol=1e-6)  # real, centro-symmetric disk


def test_custom_probe_is_complex_structured_and_not_a_disk():
    p = probe.focused_probe(64)
    phase_spread = np.std(np.angle(p[np.abs(p) > 0.2 * np.abs(p).max()]))
    assert phase_spread > 0.3  # real phase structure, not a flat disk
    assert not np.allclose(np.abs(p), np.abs(p[::-1, ::-1]), rtol=0.05)  # asymmetric (aberrated)


def test_probe_normalisation_sets_masked_mean():
    raw = probe.focused_probe(32) * 17.0
    res = probe.normalise_probe(raw, probe_scale=4.0)
    mask = probe.disk_mask(32)
    assert np.isclose(4.0 * np.mean(np.abs(res.probe) * mask), 1.0, rtol=1e-5)
    with pytest.raises(ValueError):
        probe.normalise_probe(raw, probe_scale=0.0)


def test_lines_object_is_seeded_and_in_spec_range():
    a = lines_object(128, seed=7)
    np.testing.assert_array_equal(a, lines_object(128, seed=7))
    assert not np.array_equal(a, lines_object(128, seed=8))
    assert a.dtype == np.complex64 and np.all(np.angle(a) == 0)
    amp = np.abs(a).astype(np.float64)
    ph = np.angle(lines_object(128, seed=7, phase="tanh"))
    expected = np.pi * np.tanh((amp - amp.max() / 2) / (3 * amp.mean()))
    np.testing.assert_allclose(ph, expected, atol=1e-5)


def test_lines_object_blurs_only_what_it_keeps_without_changing_a_value():
    """The blur runs on the kept centre plus the kernel radius; the result must equal blurring
    the whole double-size canvas (the definition in physics.md) and cropping."""
    from scipy.ndimage import gaussian_filter
    from skimage.draw import line as draw_line

    from ptychotrace.physics.objects import LINES_BLURS

    size, seed = 96, 3
    rng = np.random.default_rng(seed)
    canvas = np.zeros((2 * size, 2 * size))
    for r0, c0, r1, c1 in rng.integers(0, 2 * size, size=(400, 4)):
        rr, cc = draw_line(int(r0), int(c0), int(r1), int(c1))
        canvas[rr, cc] = 1.0
    full = sum(w * gaussian_filter(canvas, s) for s, w in LINES_BLURS)
    start = size // 2
    expected = full[start:start + size, start:start + size].astype(np.complex64)
    np.testing.assert_array_equal(lines_object(size, seed=seed), expected)


def test_input_gain_normalises_energy_and_dose_scale_formula():
    x = np.abs(rng.standard_normal((10, 16, 16))).astype(np.float32)
    g = scaling.input_normalisation_gain(x)
    assert np.isclose(np.mean(np.sum((g * x.astype(np.float64)) ** 2, axis=(1, 2))), 64.0)
    d = scaling.dataset_dose_scale(1e6, 2.5, 16)
    assert np.isclose(d.value**2 * 2.5, 1e6) and d.mode == "dataset"
    assert np.isclose(scaling.fallback_dose_scale(1e6, 16).value, 1e3 / 8)
