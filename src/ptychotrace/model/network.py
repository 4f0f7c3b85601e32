"""The PINN's network: a convolutional encoder and two decoders (amplitude, phase).

Input ``X`` (B, C, N, N): normalised diffraction amplitudes ``sqrt(counts) * input_gain`` of the
C = gridsize^2 patterns of a group. Output: object patches (B, C, N, N), amplitude and phase.

Architecture (PtychoPINN-style): for N = 64 the encoder has 3 stages of (conv3x3-act) x 2 +
2x2 max-pool with 32/64/128 filters times ``width``; each extra factor 2 in N adds one stage
(N = 128: 4 stages, N = 256: 5; filters double per stage, capped at 256 x width). Each decoder
mirrors the encoder with nearest-neighbour 2x upsampling and ends in a 3x3 conv to C channels.
With ``object_support='central'`` the decoders stop one level early: they predict the central
N/2 x N/2 of the patch and the object is 0 outside it (PtychoPINN's layout; about 2x cheaper).
Hidden activation: ReLU (LeakyReLU(0.1) available; see LEAKY_SLOPE). Hidden convs are He-
initialised with zero biases so that the untrained network is not a constant map (issue #5).

Variants (issue #12, chosen by measurement in docs/benchmarks.md; ``plain`` / no norm / no
residual is the original network, state-dict compatible with older checkpoints):
``arch='unet'`` concatenates each encoder stage's output (before pooling) into the decoder level
of the same resolution (U-Net skips, both decoders); ``norm='group'`` puts a GroupNorm (8 groups)
after every hidden conv; ``residual=True`` makes every block ``act(body(x) + proj(x))`` with a 1x1
projection where the width changes; ``spectral_blocks=k`` adds k Fourier blocks at the bottleneck
(``SpectralBlock``: a learned per-frequency channel mix, FNO-style, so that every bottleneck
position sees every other in one layer). Note that the amplitude input lives in diffraction space
and the output in real space, so a skip carries features, not spatially corresponding pixels;
``input_transform='backprop'`` adds a one-step object estimate in the object frame
(``BackpropInput``), and then the U-Net's skips do carry corresponding pixels.

Amplitude head: ``amp_ref * softplus(z) / ln 2`` -- range (0, inf), so it reaches any object
amplitude (the lines object spans ~0.6-5); at z = 0 it outputs ``amp_ref``, a data-derived
estimate of the mean object amplitude (see ``estimate_amplitude_reference``), so the physical
intensity scale is right from the first step and no separate scale parameter is needed (the
reference's failure mode of an unregistered learned scale cannot occur). Phase head:
``pi * tanh(z)``, range (-pi, pi).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from ..physics.forward import far_field, inverse_far_field

#: Output ranges of the heads, recorded for the output-range check (None = unbounded).
AMPLITUDE_ACTIVATION = {"name": "softplus_scaled", "formula": "amp_ref * softplus(z) / ln(2)",
                        "lower": 0.0, "upper": None}
PHASE_ACTIVATION = {"name": "pi_tanh", "formula": "pi * tanh(z)", "lower": -math.pi,
                    "upper": math.pi}

_BASE_FILTERS = (32, 64, 128)
#: Scale applied to the output convs' default (Kaiming-uniform) weights. Their biases start at 0,
#: so the first prediction scatters around the neutral object (amp_ref, phase 0). With the He-
#: initialised hidden layers (``_init_hidden``) the head's input is O(1) and input-dependent, so
#: gain 1 would start from a random object of amplitude std ~1.6 (2.5x the lines object's 0.62;
#: gs1_ideal, 1e3 photons, seed 44) that the first steps only suppress; gain 0.1 starts at std 0.17
#: with an across-pattern spread ~1000x that of the old default init (tested). Measured on that
#: run (one seed): gain 0.1 leaves the flat-object plateau at epoch ~6 (val loss 0.152), gain 1
#: at epoch ~9.
#: (The earlier note that gain 0.1 starves the network was measured with PyTorch's default hidden
#: init, under which the whole network was already input-independent; see issue #5.)
HEAD_INIT_GAIN = 0.1

#: Compute precisions of the hidden layers. "bfloat16" is autocast mixed precision (weights and
#: optimiser state stay float32); measured on the 2-core Sapphire Rapids VM (AMX-BF16) one
#: training step of the N=64 network is 3.4x (gridsize 1, central) to 3-4x (gridsize 2, full)
#: faster than float32 (docs/benchmarks.md). On a CPU without native bfloat16 (no AVX512-BF16 /
#: AMX) it is emulated and slower: float32 stays the default, and results are only bit-
#: reproducible within one precision on one machine.
PRECISIONS = ("float32", "bfloat16")

#: Input transforms of the first layer (NetworkConfig.input_transform).
INPUT_TRANSFORMS = ("amplitude", "log", "backprop")

#: Wiener regulariser of the 'backprop' input's division by the probe, relative to max |P|^2:
#: ``O_est = psi * conj(P) / (|P|^2 + BACKPROP_EPS * max|P|^2)``. Measured on the sim-lines test
#: splits at 1e9 photons (the estimate alone, stitched, amplitude SSIM gs1_custom / gs1_ideal,
#: 2000 patterns; benchmarks/bench_backprop_estimate.py): 1e-4 -> 0.694 / 0.543, 1e-3 -> 0.694 /
#: 0.556, 1e-2 -> 0.691 / 0.499, 1e-1 -> 0.521 / 0.412; larger values bias the amplitude low
#: where the probe is weak (LS scale 1.00-1.03 at 1e-3, 1.20-1.30 at 1e-1).
BACKPROP_EPS = 1e-3

#: Pixels per unit of the offset planes (NetworkConfig.position_channels): a neighbour of a
#: dense 4-px scan sits at 0.5, one of a sparse 16-px scan at 2, the scale of the input X.
OFFSET_SCALE_PX = 8.0


@dataclass(frozen=True)
class NetworkConfig:
    """Hyperparameters that fully define the network (stored in every checkpoint)."""

    N: int = 64
    gridsize: int = 1
    width: int = 1
    amp_ref: float = 1.0
    object_support: str = "full"   # "full" | "central" (object confined to the central N/2)
    activation: str = "relu"  # hidden activation: "relu" | "leaky_relu" (slope 0.1)
    arch: str = "plain"       # "plain" (encoder -> decoders) | "unet" (skip connections)
    norm: str = "none"        # "none" | "group" (GroupNorm after every hidden conv)
    residual: bool = False    # residual conv blocks (1x1 projection where the width changes)
    spectral_blocks: int = 0  # Fourier blocks at the bottleneck (SpectralBlock), 0 = none
    #: What the first layer sees: "amplitude" (X itself) or "log": ``log1p(X / input_photon) /
    #: log1p(1 / input_photon)``, a fixed compression that keeps X = 0 and X = 1 where they are
    #: and lifts the weak high-q pixels (at 1e9 photons they sit ~300x below the central peak
    #: in X, though far above their shot noise). input_photon: the X of a one-photon pixel (=
    #: the input gain, data-derived like amp_ref).
    #: Or "backprop": the first layer also sees, per pattern, the real and imaginary parts of
    #: a one-step physical object estimate (``BackpropInput``): the measured amplitudes with the
    #: far-field phase of a flat object, propagated back and divided by the probe. It puts the
    #: input in the output's (object) frame and units; needs the probe.
    input_transform: str = "amplitude"
    input_photon: float = 1.0
    #: Unrolled stages after the first network (needs input_transform 'backprop'): each takes
    #: the previous prediction through a per-pattern data-consistency step (its far field gets
    #: the measured amplitudes, ``BackpropInput.consistent``) and corrects it with its own
    #: encoder-decoder. 0 = the single network. One fixed forward pass either way.
    unrolled_stages: int = 0
    #: Compute precision of the hidden layers: "float32", or "bfloat16" (autocast mixed
    #: precision: hidden convs in bfloat16, channels-last; the two output heads, their
    #: activations and everything after them in float32). See PRECISIONS.
    precision: str = "float32"
    #: gridsize > 1: the first layer also sees each pattern's offset from its group centre, as
    #: two constant planes per pattern (dx / OFFSET_SCALE_PX, dy / OFFSET_SCALE_PX), so the
    #: network knows the group's geometry. Without them a random scan's groups are a bag of
    #: patterns whose relative shifts the network can only guess (CoordConv-style input).
    position_channels: bool = False

    @property
    def channels(self) -> int:
        return self.gridsize * self.gridsize

    @property
    def input_channels(self) -> int:
        """Channels of the first layer: per pattern its amplitude X, plus the two offset planes
        (position_channels) and the two parts of the back-propagated estimate (backprop)."""
        per_pattern = (1 + 2 * bool(self.position_channels)
                       + 2 * (self.input_transform == "backprop"))
        return per_pattern * self.channels

    @property
    def filters(self) -> tuple[int, ...]:
        if self.N < 16 or self.N & (self.N - 1):
            raise ValueError(f"network needs N a power of two >= 16, got {self.N}")
        stages = max(1, int(math.log2(self.N)) - 3)      # 64 -> 3, 128 -> 4, 256 -> 5
        out = list(_BASE_FILTERS[:stages])
        while len(out) < stages:
            out.append(min(out[-1] * 2, 256))
        return tuple(f * self.width for f in out)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["filters"] = list(self.filters)
        d["channels"] = self.channels
        d["amplitude_activation"] = dict(AMPLITUDE_ACTIVATION, amp_ref=self.amp_ref)
        d["phase_activation"] = PHASE_ACTIVATION
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetworkConfig:
        return cls(N=int(d["N"]), gridsize=int(d["gridsize"]), width=int(d["width"]),
                   amp_ref=float(d["amp_ref"]), object_support=str(d.get("object_support", "full")),
                   activation=str(d.get("activation", "relu")), arch=str(d.get("arch", "plain")),
                   norm=str(d.get("norm", "none")), residual=bool(d.get("residual", False)),
                   spectral_blocks=int(d.get("spectral_blocks", 0)),
                   input_transform=str(d.get("input_transform", "amplitude")),
                   input_photon=float(d.get("input_photon", 1.0)),
                   precision=str(d.get("precision", "float32")),
                   position_channels=bool(d.get("position_channels", False)),
                   unrolled_stages=int(d.get("unrolled_stages", 0)))


#: Negative slope of the optional LeakyReLU. Measured on gs1_custom: with ReLU the amplitude
#: decoder goes flat within 2 epochs (std 2e-7, every unit of its last block dead); LeakyReLU keeps
#: the units alive but the amplitude still flattens (std 2e-4 after 3 epochs), so the default stays
#: ReLU (the benchmarked network). Measured with PyTorch's default hidden init, before
#: ``_init_hidden`` (issue #5); with it, ReLU no longer collapses on gs1_custom at lr 1e-3 (network
#: alone Pearson 0.85 after 3 epochs; docs/benchmarks.md), so the LeakyReLU option is not needed.
LEAKY_SLOPE = 0.1


def _act(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {name!r}")


def _init_hidden(module: nn.Module, act: str, skip: tuple[nn.Module, ...] = ()) -> None:
    """He (Kaiming-normal, fan_in) weights and zero biases for every hidden conv.

    PyTorch's default conv init (kaiming_uniform with a=sqrt(5): weight variance 1/(3 fan_in), bias
    uniform +-1/sqrt(fan_in)) shrinks the second moment of a ReLU signal several-fold per layer
    (nominally 1/6); over the 10-12 hidden convs between the input and the amplitude head the
    input-dependent part of the signal shrinks ~1e-4 x while the random biases do not, so the
    initial network is a constant map: measured on gs1_ideal (1e3 photons, seed 44) the across-pattern std of the amplitude
    head's pre-activation is 1.2e-5 against 3e-3 for its (input-independent) rms, i.e. training
    starts ON the flat-object attractor and leaves it only after a seed-dependent number of epochs
    (7 to more than 10 in the 3-seed sweep; issue #5). He init keeps the second moment constant
    through ReLU layers and zero biases keep the signal input-dependent."""
    slope = LEAKY_SLOPE if act == "leaky_relu" else 0.0
    nonlinearity = "leaky_relu" if act == "leaky_relu" else "relu"
    skip_ids = {id(m) for m in skip}
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and id(m) not in skip_ids:
            nn.init.kaiming_normal_(m.weight, a=slope, mode="fan_in", nonlinearity=nonlinearity)
            nn.init.zeros_(m.bias)


#: GroupNorm groups (every hidden width here is a multiple of 8: 32 x width and up).
NORM_GROUPS = 8


def _norm(name: str, channels: int) -> list[nn.Module]:
    if name == "none":
        return []
    if name == "group":
        return [nn.GroupNorm(min(NORM_GROUPS, channels), channels)]
    raise ValueError(f"norm must be 'none' or 'group', got {name!r}")


class _Residual(nn.Module):
    """``act(body(x) + proj(x))``; ``proj`` is a 1x1 conv where the width changes."""

    def __init__(self, body: nn.Module, cin: int, cout: int, act: str):
        super().__init__()
        self.body = body
        self.proj = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)
        self.act = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.proj(x))


def _block(cin: int, cout: int, act: str = "relu", norm: str = "none",
           residual: bool = False) -> nn.Module:
    """(conv3x3 [-norm] -act) x 2; plain/no-norm keeps the original Sequential(conv, act, conv,
    act) layout (same state-dict keys as older checkpoints)."""
    first = [nn.Conv2d(cin, cout, 3, padding=1), *_norm(norm, cout), _act(act)]
    second = [nn.Conv2d(cout, cout, 3, padding=1), *_norm(norm, cout)]
    if residual:
        return _Residual(nn.Sequential(*first, *second), cin, cout, act)
    return nn.Sequential(*first, *second, _act(act))


class SpectralBlock(nn.Module):
    """Fourier block (FNO-style) on a (B, C, h, w) feature map: ``x + act(K x + W x)``.

    ``K`` multiplies the orthonormal 2-D real FFT of ``x`` at every frequency by a learned complex
    C x C matrix and transforms back; ``W`` is a 1x1 conv. Why: the map from a diffraction pattern
    to its object patch is global (every detector pixel informs every object pixel), while a 3x3
    conv stack only mixes neighbours, so this gives the bottleneck (8 x 8 for every N here) a
    global receptive field in one layer. The FFT runs in float32 in every precision. ``K``
    starts at 0, so an untrained block is ``x + act(W x)``. Parameters: 2 C^2 h (w/2+1) reals
    (1.3 M at C = 128, 8 x 8); its MACs (C^2 h (w/2+1) complex per group, ~0.7 M) are not in
    ``network_macs``, which counts convolutions."""

    def __init__(self, channels: int, size: int, act: str):
        super().__init__()
        self.size = size
        # C_in x C_out x rows x rfft cols, as (real, imag)
        self.weight = nn.Parameter(torch.zeros(channels, channels, size, size // 2 + 1, 2))
        self.pointwise = nn.Conv2d(channels, channels, 1)
        self.act = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"SpectralBlock built for {self.size}x{self.size}, got "
                             f"{tuple(x.shape[-2:])}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = torch.fft.rfft2(x.float(), norm="ortho")            # (B, C, h, w//2+1)
            yf = torch.einsum("bixy,ioxy->boxy", xf, torch.view_as_complex(self.weight))
            spec = torch.fft.irfft2(yf, s=(self.size, self.size), norm="ortho")
        return x + self.act(spec.to(x.dtype) + self.pointwise(x))


class _Decoder(nn.Module):
    """``levels`` x (2x nearest upsampling [+ concat encoder skip] + conv block), then a 3x3 conv
    to ``out_channels``. ``skips``: channels of the encoder skip per level (0 = none)."""

    def __init__(self, filters: tuple[int, ...], out_channels: int, levels: int, act: str,
                 norm: str = "none", residual: bool = False, skips: tuple[int, ...] | None = None):
        super().__init__()
        rev = list(reversed(filters))
        outs = [rev[i + 1] if i + 1 < len(rev) else rev[-1] for i in range(levels)]
        ins = [rev[0]] + outs[:-1]
        skips = skips or (0,) * levels
        self.blocks = nn.ModuleList(_block(a + s, b, act, norm, residual)
                                    for a, b, s in zip(ins, outs, skips, strict=True))
        self.head = nn.Conv2d(outs[-1], out_channels, 3, padding=1)

    def features(self, z: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The hidden layers (everything but the head)."""
        for i, blk in enumerate(self.blocks):
            z = F.interpolate(z, scale_factor=2, mode="nearest")
            if skips:
                z = torch.cat([z, skips[i]], dim=1)
            z = blk(z)
        return z

    def forward(self, z: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        return self.head(self.features(z, skips))


class BackpropInput(nn.Module):
    """The 'backprop' input: X (B, C, N, N) -> the one-step object estimate (B, 2C, N, N), real
    parts then imaginary parts, in object units.

    ``O_est = inverse_far_field(sqrt(counts) * F0 / |F0|) * conj(P) / (|P|^2 + eps * max|P|^2)``
    with ``sqrt(counts) = X / input_photon`` and ``F0 = far_field(P)``, the far field of a flat
    object, whose phase is the best guess before anything is known about the object. It is one
    error-reduction step from a flat start, per pattern (no overlap, no iteration). Why: the
    network's job becomes a correction in the object frame (the input and output pixels then
    correspond) instead of learning the inverse Fourier transform and the division by the probe;
    a structured probe makes the estimate informative on its own (measured in BACKPROP_EPS). A
    flat object of any amplitude a, noise-free, gives ``O_est = a |P|^2 / (|P|^2 + eps max|P|^2)``
    exactly (tested), and the estimate does not depend on the dose: counts and probe scale
    together. Masked detector pixels (X = 0 there) enter as zero amplitude. Computed in float32
    in every precision; the buffers derive from the probe, so they are not saved."""

    def __init__(self, probe, input_photon: float, eps: float = BACKPROP_EPS):
        super().__init__()
        p = torch.as_tensor(np.asarray(probe, dtype=np.complex64))
        if p.dim() != 2 or p.shape[0] != p.shape[1]:
            raise ValueError(f"backprop input needs a square (N, N) probe, got {tuple(p.shape)}")
        power = p.abs().square()
        if not float(power.max()) > 0:
            raise ValueError("backprop input needs a probe with non-zero intensity")
        f0 = far_field(p)
        mag = f0.abs()
        phase = torch.where(mag > 0, f0 / mag.clamp_min(torch.finfo(mag.dtype).tiny),
                            torch.ones_like(f0))
        # X / input_photon = sqrt(counts): the gain is folded into the phase factor.
        self.register_buffer("far_phase", (phase / float(input_photon)).to(torch.complex64),
                             persistent=False)
        self.register_buffer("probe_filter", (p.conj() / (power + eps * power.max())).to(
            torch.complex64), persistent=False)
        self.register_buffer("probe", p, persistent=False)
        self.input_photon = float(input_photon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            est = inverse_far_field(x.float() * self.far_phase) * self.probe_filter
        return torch.cat([est.real, est.imag], dim=1)

    def consistent(self, x: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        """One data-consistency step on object patches ``obj`` (B, C, N, N) complex: their far
        field keeps its phase and gets the measured amplitudes ``X / input_photon``; the exit
        wave's change goes back through the same Wiener division,
        ``O + conj(P) (psi' - psi) / (|P|^2 + eps max|P|^2)``, so the object is kept where the
        probe is too weak to inform it. Returns (B, 2C, N, N), real parts then imaginary parts.
        A patch that already explains the data exactly is returned unchanged (tested)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            obj = obj.to(torch.complex64)
            psi = obj * self.probe
            far = far_field(psi)
            mag = far.abs()
            unit = far / mag.clamp_min(1e-6 * float(mag.detach().max().clamp_min(1e-30)))
            measured = x.float() / self.input_photon
            psi_new = inverse_far_field(measured * unit)
            out = obj + (psi_new - psi) * self.probe_filter
        return torch.cat([out.real, out.imag], dim=1)


class PtychoNet(nn.Module):
    """Encoder + amplitude and phase decoders: X (B, C, N, N) -> (amp, phase), each (B, C, N, N)."""

    #: Upper bound of the amplitude activation (None: softplus is unbounded above, so the
    #: output-range check has no ceiling to detect); lower bound 0 is never reached.
    amplitude_bound = AMPLITUDE_ACTIVATION["upper"]
    amplitude_range = (AMPLITUDE_ACTIVATION["lower"], AMPLITUDE_ACTIVATION["upper"])

    def __init__(self, cfg: NetworkConfig, probe=None):
        """``probe``: the physical probe (N, N) complex, needed by ``input_transform='backprop'``
        (ignored otherwise)."""
        super().__init__()
        self.cfg = cfg
        f = cfg.filters
        c = cfg.channels
        if cfg.arch not in ("plain", "unet"):
            raise ValueError(f"arch must be 'plain' or 'unet', got {cfg.arch!r}")
        blk = {"act": cfg.activation, "norm": cfg.norm, "residual": cfg.residual}
        if cfg.position_channels and cfg.gridsize < 2:
            raise ValueError("position_channels needs gridsize > 1 (a gridsize-1 group has one "
                             "pattern at offset 0: the planes would carry nothing)")
        cin = cfg.input_channels
        self.encoder = nn.ModuleList(_block(cin if i == 0 else f[i - 1], f[i], **blk)
                                     for i in range(len(f)))
        if cfg.spectral_blocks < 0:
            raise ValueError(f"spectral_blocks must be >= 0, got {cfg.spectral_blocks}")
        self.spectral = nn.ModuleList(SpectralBlock(f[-1], cfg.N >> len(f), cfg.activation)
                                      for _ in range(cfg.spectral_blocks))
        # 'central': the decoders stop one level early (N/2 output, zero-padded to N), as in
        # PtychoPINN; this also skips the two most expensive full-resolution conv blocks.
        levels = len(f) - 1 if cfg.object_support == "central" else len(f)
        # U-Net: decoder level j sits at the resolution of encoder stage len(f)-1-j (pre-pool).
        skips = tuple(f[len(f) - 1 - j] for j in range(levels)) if cfg.arch == "unet" else None
        self.amp_decoder = _Decoder(f, c, levels, cfg.activation, cfg.norm, cfg.residual, skips)
        self.phase_decoder = _Decoder(f, c, levels, cfg.activation, cfg.norm, cfg.residual, skips)
        heads = (self.amp_decoder.head, self.phase_decoder.head)
        _init_hidden(self, cfg.activation, skip=heads)
        # Heads: zero bias (neutral point amp_ref / phase 0), default weights x HEAD_INIT_GAIN.
        for head in heads:
            head.weight.data.mul_(HEAD_INIT_GAIN)
            nn.init.zeros_(head.bias)
        if cfg.object_support not in ("full", "central"):
            raise ValueError(f"object_support must be 'full' or 'central', got {cfg.object_support!r}")
        if cfg.input_transform not in INPUT_TRANSFORMS:
            raise ValueError(f"input_transform must be one of {INPUT_TRANSFORMS}, got "
                             f"{cfg.input_transform!r}")
        if not (math.isfinite(cfg.input_photon) and cfg.input_photon > 0):
            raise ValueError(f"input_photon must be finite and > 0, got {cfg.input_photon}")
        self.backprop = None
        if cfg.input_transform == "backprop":
            if probe is None:
                raise ValueError("input_transform 'backprop' needs the probe (PtychoNet(cfg, probe))")
            if tuple(np.shape(probe)) != (cfg.N, cfg.N):
                raise ValueError(f"probe must be {cfg.N}x{cfg.N}, got {tuple(np.shape(probe))}")
            self.backprop = BackpropInput(probe, cfg.input_photon)
        if cfg.unrolled_stages < 0:
            raise ValueError(f"unrolled_stages must be >= 0, got {cfg.unrolled_stages}")
        if cfg.unrolled_stages and self.backprop is None:
            raise ValueError("unrolled_stages needs input_transform 'backprop' (the data-"
                             "consistency step uses the probe and the measured amplitudes)")
        stage_cfg = replace(cfg, unrolled_stages=0)
        self.unrolled = nn.ModuleList(PtychoNet(stage_cfg, probe) for _ in range(cfg.unrolled_stages))
        if cfg.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {cfg.precision!r}")
        #: The precision forward() computes in: the config's, unless inference changes it
        #: (set_compute_precision; the checkpoint keeps recording the training precision).
        self.compute_precision = cfg.precision
        self.channels_last = False       # conv weights' layout (set_conv_memory_format)
        if cfg.precision == "bfloat16":
            # oneDNN's bfloat16 convolutions are fastest channels-last (the layout does not change
            # the state dict, so checkpoints load into either precision).
            self.set_conv_memory_format(torch.channels_last)

    def set_compute_precision(self, precision: str) -> None:
        """Run forward() in ``precision`` ("float32" | "bfloat16") from now on. The weights are
        float32 in both, so a bfloat16-trained network can run in float32 (inference on a CPU
        that only emulates bfloat16; model/precision.py) and vice versa."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.compute_precision = precision
        for stage in self.unrolled:
            stage.set_compute_precision(precision)

    def set_conv_memory_format(self, memory_format: torch.memory_format) -> None:
        """Put every conv weight in ``memory_format`` (channels-last is faster on CPU). Only the
        convs: a SpectralBlock's 5-D weight has no channels-last layout."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.to(memory_format=memory_format)
        # forward() gives the input the same layout (a mixed one makes oneDNN reorder each layer)
        self.channels_last = memory_format == torch.channels_last
        for stage in self.unrolled:
            stage.channels_last = self.channels_last

    def forward(self, x: torch.Tensor, dx: torch.Tensor | None = None,
                dy: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, N, N) input amplitudes; dx, dy: (B, C) offsets of each pattern from its group
        centre in pixels (needed with ``position_channels``, ignored otherwise)."""
        if x.dim() != 4 or x.shape[1] != self.cfg.channels or x.shape[-1] != self.cfg.N:
            raise ValueError(f"network expects (B, {self.cfg.channels}, {self.cfg.N}, {self.cfg.N}) "
                             f"input, got {tuple(x.shape)}")
        amp, phase = self._stage(x, dx, dy)
        for stage in self.unrolled:
            estimate = self.backprop.consistent(x, torch.polar(amp, phase))
            amp, phase = stage._stage(x, dx, dy, estimate)
        return amp, phase

    def _stage(self, x: torch.Tensor, dx: torch.Tensor | None, dy: torch.Tensor | None,
               estimate: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One encoder-decoder pass. ``estimate``: the (B, 2C, N, N) object estimate the
        backprop input sees (default: the one-step estimate from a flat object)."""
        if self.cfg.input_transform == "log":     # float32, before any autocast
            p = self.cfg.input_photon
            x = torch.log1p(x.float().clamp_min(0) / p) / math.log1p(1.0 / p)
        elif self.backprop is not None:
            x = torch.cat([x.float(), self.backprop(x) if estimate is None else estimate], dim=1)
        if self.cfg.position_channels:
            x = torch.cat([x, *self._offset_planes(x, dx, dy)], dim=1)
        low = self.compute_precision == "bfloat16"
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=low):
            z = x
            feats = []
            for blk in self.encoder:
                z = blk(z)
                feats.append(z)
                z = F.max_pool2d(z, 2)
            for blk in self.spectral:
                z = blk(z)
            skips = list(reversed(feats)) if self.cfg.arch == "unet" else None
            za = self.amp_decoder.features(z, skips)
            zp = self.phase_decoder.features(z, skips)
        # Heads and activations in float32 in every precision: a bfloat16 amplitude would be
        # quantised to ~0.4% steps, coarser than the shot noise of a 1e9-photon pattern.
        with torch.autocast(device_type=x.device.type, enabled=False):
            amp = self.cfg.amp_ref * F.softplus(self.amp_decoder.head(za.float())) / math.log(2.0)
            phase = math.pi * torch.tanh(self.phase_decoder.head(zp.float()))
        if amp.shape[-1] != self.cfg.N:          # central support: object is 0 outside N/2
            q = (self.cfg.N - amp.shape[-1]) // 2
            amp = F.pad(amp, (q, q, q, q))
            phase = F.pad(phase, (q, q, q, q))
        return amp, phase

    def _offset_planes(self, x: torch.Tensor, dx: torch.Tensor | None,
                       dy: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, n, _ = x.shape
        c = self.cfg.channels        # x may already hold the backprop estimate's 2C channels
        if dx is None or dy is None:
            raise ValueError("this network has position_channels: it needs the group offsets "
                             "dx, dy (B, C) in pixels")
        planes = []
        for d in (dx, dy):
            if tuple(d.shape) != (b, c):
                raise ValueError(f"group offsets must be (B, C) = {(b, c)}, got {tuple(d.shape)}")
            v = (d.to(device=x.device, dtype=torch.float32) / OFFSET_SCALE_PX)[:, :, None, None]
            planes.append(v.expand(b, c, n, n))
        return planes[0], planes[1]


def network_macs(cfg: NetworkConfig) -> dict:
    """Multiply-accumulates of one forward pass, counted over the convolutions (the rest --
    activations, norms, pooling, upsampling -- is O(1) per pixel and ignored). Returns
    ``{"macs_per_group", "macs_per_pattern", "parameters"}`` (a group is C patterns)."""
    # the backprop input needs a probe; its FFTs are not convolutions, any probe counts the same
    probe = np.ones((cfg.N, cfg.N), np.complex64) if cfg.input_transform == "backprop" else None
    net = PtychoNet(cfg, probe).eval()
    total = [0]

    def hook(mod, _inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total[0] += out.numel() * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        zeros = torch.zeros(1, cfg.channels)
        net(torch.zeros(1, cfg.channels, cfg.N, cfg.N), zeros, zeros)
    for h in handles:
        h.remove()
    return {"macs_per_group": int(total[0]), "macs_per_pattern": total[0] / cfg.channels,
            "parameters": int(sum(p.numel() for p in net.parameters()))}
