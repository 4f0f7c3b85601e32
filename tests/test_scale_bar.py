"""Scale bars on object images where the real-space pixel size is known (issue #13).

The length is a pure function (tested by its properties and a few worked cases); the one image
writer draws it, the run stage passes the dataset's geometry to it, and the report passes
run_metadata.json's geometry block. No geometry: no bar.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from ptychotrace.records import examples as ex
from ptychotrace.records.run_metadata import GeometryBlock
from ptychotrace.report import build_report, figures
from ptychotrace.report.figures import image_figure, scale_bar
from ptychotrace.telemetry.writers import write_npy


@pytest.mark.parametrize("pixel_m,width,length_m,label", [
    (10e-9, 100, 200e-9, "200 nm"),     # 1/5 of 1 µm is exactly 200 nm
    (7e-9, 300, 500e-9, "500 nm"),      # target 420 nm: 500 is nearer (log) than 200
    (30e-9, 1000, 5e-6, "5 µm"),        # target 6 µm
    (1e-8, 500, 1e-6, "1 µm"),          # target 1 µm exactly: µm, not "1e+03 nm"
    (2e-6, 600, 200e-6, "200 µm"),
    (5e-6, 1000, 1e-3, "1 mm"),
])
def test_scale_bar_worked_cases(pixel_m, width, length_m, label):
    bar = scale_bar(pixel_m, width)
    assert bar.length_m == pytest.approx(length_m, rel=1e-12)
    assert bar.length_px == pytest.approx(length_m / pixel_m, rel=1e-12)
    assert bar.label == label


def test_scale_bar_is_a_round_length_near_a_fifth_of_the_width():
    rng = np.random.default_rng(0)
    for pixel_m, width in zip(10 ** rng.uniform(-10, -5, 300), rng.integers(8, 4000, 300),
                              strict=True):
        bar = scale_bar(float(pixel_m), int(width))
        mantissa = bar.length_m / 10 ** math.floor(math.log10(bar.length_m) + 1e-9)
        assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-9, bar
        # the nearest 1-2-5 value on a log scale is within sqrt(2.5) (the widest step, 2 -> 5)
        share = bar.length_px / width
        assert 0.2 / math.sqrt(2.5) - 1e-12 <= share <= 0.2 * math.sqrt(2.5) + 1e-12, bar
        assert bar.length_px == pytest.approx(bar.length_m / pixel_m)


@pytest.mark.parametrize("pixel_m", [None, 0.0, -1e-9, float("nan"), float("inf")])
def test_no_bar_without_a_known_pixel_size(pixel_m):
    assert scale_bar(pixel_m, 100) is None
    assert scale_bar(1e-8, 0) is None


def _bars(fig) -> list:
    return [a for ax in fig.axes for a in ax.artists if a.get_gid() == "scale-bar"]


def test_image_writer_draws_the_bar_of_the_computed_length():
    img = np.random.default_rng(1).random((30, 50))
    fig = image_figure(img, "amplitude", "amplitude", "", pixel_size_m=10e-9)
    (artist,) = _bars(fig)
    rect = artist.size_bar.get_children()[0]
    assert rect.get_width() == pytest.approx(scale_bar(10e-9, 50).length_px)   # 100 nm = 10 px
    assert rect.get_width() == pytest.approx(10.0)
    assert artist.txt_label.get_text() == "100 nm"
    assert _bars(image_figure(img, "phase", "phase", "rad", pixel_size_m=10e-9))
    assert not _bars(image_figure(img, "amplitude", "amplitude", ""))            # unknown size
    assert not _bars(image_figure(img, "d", "difference", "", pixel_size_m=10e-9))


def _spy(monkeypatch) -> list:
    calls: list = []
    real = figures.scale_bar

    def spy(pixel_size_m, width_px, *a, **k):
        bar = real(pixel_size_m, width_px, *a, **k)
        calls.append((pixel_size_m, width_px, bar))
        return bar

    monkeypatch.setattr(figures, "scale_bar", spy)
    return calls


def test_run_stage_passes_the_dataset_geometry(tmp_path, monkeypatch):
    from ptychotrace.io.geometry import Geometry
    from ptychotrace.stages.reconstruction import object_pixel_size_m, write_object

    # the io record's field names are the block's (drift fails here), and it validates
    assert set(GeometryBlock.model_fields) <= set(Geometry.model_fields)
    geom = Geometry(source_format="cxi", wavelength_m=1e-10, detector_distance_m=2.0,
                    detector_pixel_width_m=75e-6, N=64, object_pixel_width_m=1e-10 * 2.0 / (64 * 75e-6))
    assert object_pixel_size_m(SimpleNamespace(metadata={"geometry": geom.to_dict()})) == \
        pytest.approx(41.666666e-9, rel=1e-6)
    assert object_pixel_size_m(SimpleNamespace(metadata={})) is None     # a simulation
    calls = _spy(monkeypatch)
    amp = np.ones((20, 40), np.float32)
    cov = np.ones_like(amp, bool)
    write_object(tmp_path, amp, amp, cov, "x", pixel_size_m=geom.object_pixel_width_m)
    assert [c[:2] for c in calls] == [(geom.object_pixel_width_m, 40)] * 2   # amplitude, phase
    assert all(c[2] is not None for c in calls)
    calls.clear()
    write_object(tmp_path / "sim", amp, amp, cov, "x")
    assert [c[2] for c in calls] == [None, None]


def _tiny_run(root, geometry: GeometryBlock | None):
    meta = ex.run_metadata(geometry=geometry)
    ex.write_run_dir(root, meta)
    rng = np.random.default_rng(2)
    for rel in ("inference_outputs/amplitude.npy", "inference_outputs/phase.npy"):
        write_npy(root / rel, rng.random((24, 36)).astype(np.float32))
    return root


def test_report_images_get_a_bar_only_with_geometry(tmp_path, monkeypatch):
    calls = _spy(monkeypatch)
    px = 25e-9
    geom = GeometryBlock(source_format="cxi", object_pixel_width_m=px, object_pixel_height_m=px)
    text = build_report(_tiny_run(tmp_path / "real", geom)).html.read_text()
    assert [c[:2] for c in calls] == [(px, 36), (px, 36)]   # prediction amplitude and phase
    assert calls[0][2].label == "200 nm" and calls[0][2].length_px == pytest.approx(8.0)
    assert "Object pixel 25 nm" in text and "scale bar" in text
    calls.clear()
    text = build_report(_tiny_run(tmp_path / "sim", None)).html.read_text()
    assert [c[2] for c in calls] == [None, None]
    assert "scale bar" not in text
