"""model/precision.py: native-bfloat16 detection, the training warning, and the precision
inference runs a network in (and its switch on the network)."""

from __future__ import annotations

import pytest
import torch

from ptychotrace.model.network import NetworkConfig, PtychoNet
from ptychotrace.model.precision import (
    bfloat16_training_warning,
    cpu_bfloat16_flags,
    cpu_flags,
    native_bfloat16,
    precision_note,
    resolve_inference_precision,
)

# /proc/cpuinfo excerpts: an AVX2-only x86 CPU (AMD EPYC Milan), a Sapphire Rapids with AMX, an
# Arm server with the BF16 extension
AVX2 = ("processor\t: 0\nmodel name\t: AMD EPYC\n"
        "flags\t\t: fpu sse sse2 avx avx2 fma bmi2 sha_ni vaes\n\nprocessor\t: 1\n")
AMX = ("model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 avx512f avx512_bf16 "
       "amx_bf16 amx_tile amx_int8\n")
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sha2 bf16 i8mm\nCPU part\t: 0xd40\n"


def test_cpu_flags_and_native_bfloat16_from_cpuinfo():
    assert "avx2" in cpu_flags(AVX2) and cpu_flags(AVX2) == sorted(cpu_flags(AVX2))
    assert cpu_flags("model name\t: something\n") is None
    assert cpu_bfloat16_flags(AVX2) == []
    assert cpu_bfloat16_flags(AMX) == ["amx_bf16", "avx512_bf16"]
    assert cpu_bfloat16_flags(ARM) == ["bf16"]
    assert cpu_bfloat16_flags("model name\t: something\n") is None      # no flags line
    assert native_bfloat16("cpu", AVX2) is False
    assert native_bfloat16("cpu", AMX) is True and native_bfloat16("cpu", ARM) is True
    assert native_bfloat16("cpu", "") is None
    assert native_bfloat16("meta") is None                              # cannot tell


def test_training_warns_only_for_emulated_bfloat16():
    msg = bfloat16_training_warning("bfloat16", "cpu", AVX2)
    assert msg is not None and "emulates" in msg and "--precision float32" in msg
    assert bfloat16_training_warning("bfloat16", "cpu", AMX) is None
    assert bfloat16_training_warning("float32", "cpu", AVX2) is None
    assert bfloat16_training_warning("bfloat16", "cpu", "") is None     # unknown: no claim


@pytest.mark.parametrize("requested,trained,cpuinfo,expected", [
    ("auto", "bfloat16", AVX2, "float32"),       # emulated: fall back
    ("auto", "bfloat16", AMX, "bfloat16"),
    ("auto", "bfloat16", "", "bfloat16"),        # unknown: keep the model's
    ("auto", "float32", AMX, "float32"),
    ("bfloat16", "float32", AVX2, "bfloat16"),   # forced, even where slow
    ("float32", "bfloat16", AMX, "float32"),
])
def test_inference_precision_resolution(requested, trained, cpuinfo, expected):
    rec = resolve_inference_precision(requested, trained, "cpu", cpuinfo)
    assert rec["compute_precision"] == expected
    assert rec["requested"] == requested and rec["trained_precision"] == trained
    assert rec["native_bfloat16"] == native_bfloat16("cpu", cpuinfo)
    note = precision_note(rec)
    assert (note is None) == (expected == trained)
    if note:
        assert expected in note and rec["reason"] in note


def test_inference_precision_refuses_unknown():
    with pytest.raises(ValueError, match="inference precision must be one of"):
        resolve_inference_precision("fp16", "float32", "cpu", AVX2)


def test_network_compute_precision_switch():
    """A bfloat16-trained network switched to float32 computes what the float32 network with the
    same weights computes (float rounding of the weight layout aside), and switching back
    restores its bfloat16 output exactly."""
    torch.manual_seed(5)
    cfg = dict(N=32, gridsize=1, amp_ref=2.0, object_support="central")
    full = PtychoNet(NetworkConfig(**cfg))
    mixed = PtychoNet(NetworkConfig(**cfg, precision="bfloat16"))
    mixed.load_state_dict(full.state_dict())
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        a16, _ = mixed(x)
        mixed.set_compute_precision("float32")
        a16_as32, p16_as32 = mixed(x)
        a32, p32 = full(x)
        mixed.set_compute_precision("bfloat16")
        a16_again, _ = mixed(x)
    assert mixed.cfg.precision == "bfloat16"            # the recorded precision is unchanged
    torch.testing.assert_close(a16_as32, a32, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(p16_as32, p32, rtol=1e-5, atol=1e-6)
    assert not torch.equal(a16, a32) and torch.equal(a16, a16_again)
    with pytest.raises(ValueError, match="precision must be one of"):
        mixed.set_compute_precision("half")
