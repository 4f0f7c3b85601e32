"""benchmarks/make_reference_probe.py: the reference probe's smoothing and the file it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _vortex_probe(n: int = 32) -> np.ndarray:
    """A disk whose phase winds fast (0.9 rad per px along x): real/imaginary smoothing would
    damp its amplitude; smoothing the amplitude and unwrapped phase must not."""
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    amp = (xx ** 2 + yy ** 2 < (n / 3) ** 2).astype(float) + 1e-3
    return amp * np.exp(0.9j * xx)


def test_smoothing_keeps_a_fast_phase_ramp(load_benchmark):
    mod = load_benchmark("make_reference_probe")
    probe = _vortex_probe()
    smoothed = mod.smooth_amplitude_and_phase(probe, 0.5)
    inner = (slice(12, 20), slice(12, 20))                # well inside the disk
    assert np.allclose(np.abs(smoothed[inner]), np.abs(probe[inner]), rtol=1e-3)
    ramp = np.angle(smoothed[16, 13:19] * np.conj(smoothed[16, 12:18]))
    assert np.allclose(ramp, 0.9, atol=1e-3)
    # the naive alternative loses ~10 % of the amplitude on this ramp: the test can tell them apart
    from scipy.ndimage import gaussian_filter
    naive = gaussian_filter(probe.real, 0.5) + 1j * gaussian_filter(probe.imag, 0.5)
    assert np.abs(naive[inner]).mean() < 0.95 * np.abs(probe[inner]).mean()


def test_sigma_zero_is_the_identity(load_benchmark):
    mod = load_benchmark("make_reference_probe")
    probe = _vortex_probe(16)
    assert np.array_equal(mod.smooth_amplitude_and_phase(probe, 0.0), probe.astype(np.complex64))


def test_writes_a_probe_file_the_simulator_reads_and_refuses_to_overwrite(load_benchmark, tmp_path):
    from ptychotrace.physics.probe import load_probe_npz
    mod = load_benchmark("make_reference_probe")
    src, out = tmp_path / "src.npz", tmp_path / "probe.npz"
    np.savez(src, probeGuess=_vortex_probe(16))
    assert mod.main([str(src), str(out)]) == 0
    probe = load_probe_npz(out, 16)
    assert probe.shape == (16, 16) and np.iscomplexobj(probe)
    with np.load(out, allow_pickle=False) as z:
        prov = json.loads(str(z["provenance"]))
    assert prov["sigma_px"] == 0.5 and len(prov["source_sha256"]) == 64
    before = out.read_bytes()
    with pytest.raises(SystemExit):
        mod.main([str(src), str(out), "--sigma", "1.0"])
    assert out.read_bytes() == before


def test_refuses_a_file_without_a_probe(load_benchmark, tmp_path):
    mod = load_benchmark("make_reference_probe")
    src = tmp_path / "src.npz"
    np.savez(src, objectGuess=np.ones((4, 4), np.complex64))
    with pytest.raises(SystemExit):
        mod.main([str(src), str(tmp_path / "out.npz")])
    assert not (tmp_path / "out.npz").exists()
