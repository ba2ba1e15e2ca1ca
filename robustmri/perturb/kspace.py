"""k-space perturbations (family ``kspace``): motion, ghosting, spike, Cartesian undersampling.

k-space is the centred 2-D DFT of each (H, W) image (``fftshift(fft2(u))``, DC at index
``(H//2, W//2)``). The phase-encode direction is the column axis (W): one k-space *line* is a
column ``k[..., :, j]`` (all readout samples of one phase-encode step), as in fastMRI's masks and
in TorchIO's motion segments along the last axis.

Output: scanners show magnitude images, so every core returns ``|ifft2(...)|`` by default
(``output="magnitude"``); ``output="real"`` returns the real part, as TorchIO does.
"""

from __future__ import annotations

import math

from typing import Literal

import torch

from robustmri.perturb.base import Params, Perturbation, need_spacing, rand, register
from robustmri.rng import RandomSource
from robustmri.perturb.geometric import rigid_warp_copies

Output = Literal["magnitude", "real"]

REFERENCE_LINES = 128
"""Phase-encode lines of the reference acquisition that the motion and undersampling tables
describe (the field of view sampled at 128 lines). Segment boundaries, the fully sampled centre and
the sampling density are placed in cycles per field of view as for that acquisition, so a severity
corrupts the same band of the anatomy at 64, 128 or 256 pixels; a fraction of *each* matrix would
make the clean centre 4x wider in cycles per field of view at 256 than at 64 pixels."""


def segment_starts(times: torch.Tensor, width: int, reference_lines: int | None = None) -> torch.Tensor:
    """First k-space column (centred order, 0..W) of each segment after the first, for segment
    boundary ``times`` (..., S-1) in (0, 1) of a sequential acquisition: ``floor(times * W)`` when
    ``reference_lines`` is None, else the same boundaries in cycles per field of view as an
    acquisition of ``reference_lines`` lines (``W//2 + floor((times - 1/2) * reference_lines)``,
    clamped to [0, W])."""
    if reference_lines is None:
        return torch.floor(times * width).long()
    return (width // 2 + torch.floor((times - 0.5) * float(reference_lines)).long()).clamp(0, width)


def fft2c(u: torch.Tensor) -> torch.Tensor:
    """Centred 2-D DFT over the last two axes (complex64 for float32 input)."""
    return torch.fft.fftshift(torch.fft.fft2(u), dim=(-2, -1))


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2c`."""
    return torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1)))


def band_limit(u: torch.Tensor, size: int) -> torch.Tensor:
    """The (B, C, size, size) image holding the central ``size x size`` k-space samples of
    (B, C, H, W) ``u`` (``size <= min(H, W)``, even): the same field of view sampled on a coarser
    grid with no aliasing (an ideal low-pass, then decimation), intensities preserved (the DFT is
    rescaled by ``size^2 / (H W)``). Real part; float64 inside."""
    h, w = u.shape[-2:]
    if size > min(h, w) or size % 2:
        raise ValueError(f"band_limit needs an even size <= {min(h, w)}, got {size}")
    k = torch.fft.fftshift(torch.fft.fft2(u.double()), dim=(-2, -1))
    top, left = h // 2 - size // 2, w // 2 - size // 2
    k = k[..., top : top + size, left : left + size]
    out = torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1))).real * (size * size / (h * w))
    return out.to(u.dtype)


def _along_w(u: torch.Tensor, centred_weight: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """``ifft2c(fft2c(u) * w)`` for a k-space weight ``w`` that varies along ``axis`` only (given in
    centred order, broadcastable to ``u``): the DFT along the other axis cancels, so one 1-D
    transform pair does it, and the weight is moved to FFT order instead of shifting the spectrum."""
    w = torch.fft.ifftshift(centred_weight, dim=axis)
    return torch.fft.ifft(torch.fft.fft(u, dim=axis) * w, dim=axis)


def _to_image(z: torch.Tensor, output: Output, dtype: torch.dtype) -> torch.Tensor:
    if output == "magnitude":
        return z.abs().to(dtype)
    if output == "real":
        return z.real.to(dtype)
    raise ValueError(f"output must be 'magnitude' or 'real', got {output!r}")


# --------------------------------------------------------------------------------------------------
# Ghosting


def ghosting(
    u: torch.Tensor,
    num_ghosts: int,
    intensity: float,
    restore: float | None = 0.02,
    axis: int = -1,
    output: Output = "magnitude",
) -> torch.Tensor:
    """Periodic ghosts: every ``num_ghosts``-th k-space line along ``axis`` is scaled by
    ``1 - intensity``; the central ``restore`` fraction of lines (None: the central line only) is
    kept, as TorchIO's ``Ghosting`` (``spectrum[::n] *= 1 - intensity``, then restore the centre).
    One difference: the ``max(1, round(restore * n))`` central lines ``[n//2 - size//2, ... + size)``
    are restored, so the DC line always is; TorchIO restores ``size - 1`` lines for odd sizes and
    none when ``size < 2`` (then the whole image dims by ``1 - intensity``).

    ``num_ghosts`` lines apart in k-space -> ``num_ghosts`` replicas across the field of view.
    Zero ``intensity`` or ``num_ghosts`` returns the input unchanged.
    """
    if not num_ghosts or not intensity:
        return u.clone()
    axis = axis % u.ndim
    n = u.shape[axis]
    weight = torch.ones(n, dtype=torch.float32, device=u.device)
    weight[:: int(num_ghosts)] = 1.0 - float(intensity)
    mid = n // 2
    size = 1 if restore is None else max(1, int(round(float(restore) * n)))
    weight[mid - size // 2 : mid - size // 2 + size] = 1.0
    view = [1] * u.ndim
    view[axis] = n
    return _to_image(_along_w(u, weight.view(view), axis), output, u.dtype)


@register
class Ghosting(Perturbation):
    """Ghosting along the phase-encode axis (W): every ``num_ghosts``-th k-space line scaled by
    ``1 - intensity`` (unitless, 0..1), the central line restored (TorchIO's ``Ghosting``).

    ``num_ghosts=2`` (the N/2 ghost at half the field of view) at every severity: with every 4th
    line or sparser, even removing the lines (intensity 1) stays above ~24 dB. Only the central
    (DC) line is restored (``restore=None``): a restored *fraction* of lines covers 4x more
    cycles per field of view at 256 than at 64 pixels and made the same severity 6 dB milder there.
    """

    name = "ghosting"
    family = "kspace"
    severities = {
        1: {"num_ghosts": 2, "intensity": 0.13, "restore": None},
        2: {"num_ghosts": 2, "intensity": 0.21, "restore": None},
        3: {"num_ghosts": 2, "intensity": 0.34, "restore": None},
        4: {"num_ghosts": 2, "intensity": 0.56, "restore": None},
        5: {"num_ghosts": 2, "intensity": 0.93, "restore": None},
    }

    def apply(self, u: torch.Tensor, num_ghosts: int, intensity: float, restore: float | None) -> torch.Tensor:
        return ghosting(u, num_ghosts, intensity, restore, axis=-1)


# --------------------------------------------------------------------------------------------------
# Spike (herringbone)


def spike(
    u: torch.Tensor,
    positions: torch.Tensor,
    intensity: float | torch.Tensor,
    output: Output = "magnitude",
) -> torch.Tensor:
    """Add k-space spikes: at ``floor(positions * (H, W))`` add ``intensity * max|k|`` (real, > 0).

    ``positions`` is (B, S, 2) in [0, 1) (row, col fraction of the centred k-space); ``intensity``
    a float or (B,) tensor: the spike height relative to the image's k-space maximum, as TorchIO's
    ``Spike``. A spike off the centre gives stripes of amplitude ``intensity * mean(u)``.
    """
    b, _, h, w = u.shape
    if positions.numel() == 0:
        return u.clone()
    # A spike of value a at centred k-space index (r, c) adds, after the inverse DFT, the plane wave
    # a / (H W) * exp(2 pi i (p y / H + q x / W)) with (p, q) = (r - H//2, c - W//2): no FFT needed.
    # The k-space maximum of a non-negative image is its DC term, the sum of its pixels.
    # Each image its own rule, so an image's spike does not depend on the others in its batch. On a
    # CPU, reading the minimum back is free and spares the FFT of a batch without negative values;
    # elsewhere both are computed and chosen per image (no host wait).
    dc = u.float().sum(dim=(-3, -2, -1)).double()  # (B,)
    if u.device.type == "cpu" and float(u.amin()) >= 0:
        peak = dc
    else:
        peak = torch.where(u.amin(dim=(-3, -2, -1)) >= 0, dc, fft2c(u.double()).abs().amax(dim=(-3, -2, -1)))
    amp = peak * torch.as_tensor(intensity, dtype=torch.float64, device=u.device)  # (B,) or scalar
    amp = (amp.expand(b) if amp.ndim else amp.repeat(b)) / (h * w)
    pos = positions.to(u.device)
    p = (torch.floor(pos[..., 0] * h).long().clamp(0, h - 1) - h // 2)  # (B, S) row frequency
    q = (torch.floor(pos[..., 1] * w).long().clamp(0, w - 1) - w // 2)  # (B, S) column frequency
    # the plane wave is separable: exp(2 pi i p y / H) exp(2 pi i q x / W); integer phases mod H, W
    y = torch.arange(h, device=u.device).view(1, 1, h)
    x = torch.arange(w, device=u.device).view(1, 1, w)
    ay = (2 * torch.pi / h) * ((p.unsqueeze(-1) * y) % h).double()  # (B, S, H) radians
    ax = (2 * torch.pi / w) * ((q.unsqueeze(-1) * x) % w).double()  # (B, S, W)
    scale = amp.view(b, 1, 1)
    cy, sy = (scale * torch.cos(ay)).float(), (scale * torch.sin(ay)).float()
    cx, sx = torch.cos(ax).float(), torch.sin(ax).float()
    # real and imaginary parts of sum_s a e^{i ay} e^{i ax}, as (B, S, H) x (B, S, W) matrix products
    re = torch.matmul(cy.transpose(1, 2), cx) - torch.matmul(sy.transpose(1, 2), sx)  # (B, H, W)
    im = torch.matmul(sy.transpose(1, 2), cx) + torch.matmul(cy.transpose(1, 2), sx)
    real = u.float() + re.unsqueeze(1)
    if output == "real":
        return real.to(u.dtype)
    if output != "magnitude":
        raise ValueError(f"output must be 'magnitude' or 'real', got {output!r}")
    return torch.hypot(real, im.unsqueeze(1)).to(u.dtype)


@register
class Spike(Perturbation):
    """Spike (herringbone) artifact: ``num_spikes`` random k-space peaks of height ``intensity``
    times the k-space maximum (unitless); positions drawn per image as TorchIO's ``RandomSpike``."""

    name = "spike"
    grid_invariance = "pixel"
    family = "kspace"
    stochastic = True
    severities = {
        1: {"num_spikes": 1, "intensity": 0.09},
        2: {"num_spikes": 1, "intensity": 0.145},
        3: {"num_spikes": 1, "intensity": 0.24},
        4: {"num_spikes": 1, "intensity": 0.39},
        5: {"num_spikes": 1, "intensity": 0.66},
    }

    def sample(self, params: Params, shape: torch.Size, generator: RandomSource, device: torch.device) -> Params:
        n = int(params.pop("num_spikes"))
        params["positions"] = rand((shape[0], n, 2), generator, device)
        return params

    def apply(self, u: torch.Tensor, positions: torch.Tensor, intensity: float) -> torch.Tensor:
        return spike(u, positions, intensity)


# --------------------------------------------------------------------------------------------------
# Motion (Shaw et al. 2019)


def motion(
    u: torch.Tensor,
    angle_deg: torch.Tensor,
    shift_px: torch.Tensor,
    times: torch.Tensor,
    output: Output = "magnitude",
    reference_lines: int | None = None,
) -> torch.Tensor:
    """Rigid in-plane motion during the acquisition (Shaw et al. 2019; TorchIO's ``Motion``).

    The phase-encode lines (k-space columns) are split at ``floor(W * times)`` into S segments;
    segment s is filled with the spectrum of the image moved by the rigid transform
    ``(angle_deg[:, s], shift_px[:, s])``. Shapes: ``angle_deg`` (B, S) degrees, ``shift_px``
    (B, S, 2) pixels (rows, cols), ``times`` (B, S-1) increasing in (0, 1); ``reference_lines``:
    see :func:`segment_starts`. Identity transforms in every segment return the input (up to FFT
    round-off).
    """
    b, _, h, w = u.shape
    s = angle_deg.shape[1]
    moved = rigid_warp_copies(u, angle_deg, shift_px).reshape(b, s, h, w)
    # Segments are ranges of k-space columns (W frequencies), so the DFT along H cancels: a 1-D
    # transform pair along W suffices, with the segment map moved to FFT order.
    # The moved images are real, so a half spectrum holds everything: column j > W//2 of the full
    # spectrum is the conjugate of column W - j.
    spectra = torch.fft.rfft(moved, dim=-1)  # (B, S, H, W//2 + 1), FFT order along W
    half = spectra.shape[-1]
    cols = torch.arange(w, device=u.device).view(1, 1, w)
    starts = segment_starts(times.to(u.device), w, reference_lines).unsqueeze(-1)  # (B, S-1, 1)
    seg = torch.fft.ifftshift((cols >= starts).sum(dim=1), dim=-1)  # (B, W): segment of each column
    c = torch.arange(half, device=u.device)
    pos = torch.gather(spectra, 1, seg[:, :half].view(b, 1, 1, half).expand(b, 1, h, half))  # columns 0..W//2
    neg_seg = seg[:, (w - c) % w]  # segment of column W - c, for c = 0..W//2
    neg = torch.gather(spectra, 1, neg_seg.view(b, 1, 1, half).expand(b, 1, h, half))
    k = torch.cat([pos, neg[..., 1 : w - half + 1].conj().flip(-1)], dim=-1)  # (B, 1, H, W)
    return _to_image(torch.fft.ifft(k, dim=-1), output, u.dtype)


@register
class Motion(Perturbation):
    """Rigid motion artifact: ``num_transforms`` movements at random times; each rotation drawn
    uniformly in +-``degrees`` (degrees) and each shift component in +-``translation_mm`` (mm).

    The k-space segment holding the centre keeps the original position (TorchIO's convention);
    times are evenly spaced with +-30 % jitter, as TorchIO's ``RandomMotion``. Because that
    central segment (1 / (num_transforms + 1) of k-space) stays clean, PSNR saturates near 30 dB
    with 2 movements however large they are: higher severities use more movements.
    """

    name = "motion"
    family = "kspace"
    stochastic = True
    needs_spacing = True
    severities = {
        1: {"num_transforms": 2, "degrees": 1.2, "translation_mm": 1.2, "reference_lines": REFERENCE_LINES},
        2: {"num_transforms": 3, "degrees": 2.0, "translation_mm": 2.0, "reference_lines": REFERENCE_LINES},
        3: {"num_transforms": 6, "degrees": 4.0, "translation_mm": 4.0, "reference_lines": REFERENCE_LINES},
        4: {"num_transforms": 8, "degrees": 8.0, "translation_mm": 8.0, "reference_lines": REFERENCE_LINES},
        5: {"num_transforms": 16, "degrees": 16.0, "translation_mm": 16.0, "reference_lines": REFERENCE_LINES},
    }

    def resolve(self, params: Params, u: torch.Tensor, mask: torch.Tensor | None, spacing: torch.Tensor | None) -> Params:
        if "translation_mm" in params:
            params["translation_px"] = (float(params.pop("translation_mm")) / need_spacing(spacing, self.name)).float()
        return params

    def sample(self, params: Params, shape: torch.Size, generator: RandomSource, device: torch.device) -> Params:
        b = shape[0]
        ref = params.get("reference_lines")
        t = int(params.pop("num_transforms"))
        deg = float(params.pop("degrees"))
        tr = torch.as_tensor(params.pop("translation_px"), dtype=torch.float32).to(device).expand(b).view(b, 1, 1)
        step = 1.0 / (t + 1)
        base = torch.arange(1, t + 1, dtype=torch.float32, device=device) * step
        jitter = (2.0 * rand((b, t), generator, device) - 1.0) * (0.3 * step)
        times = base + jitter  # (B, T), increasing
        angles = (2.0 * rand((b, t + 1), generator, device) - 1.0) * deg
        shifts = (2.0 * rand((b, t + 1, 2), generator, device) - 1.0) * tr
        # The segment holding the k-space centre column W//2 keeps the original image.
        width = shape[-1]
        centre = (segment_starts(times, width, ref) <= width // 2).sum(dim=1)  # same rule as motion()
        keep = torch.nn.functional.one_hot(centre, t + 1).bool()  # (B, T+1)
        params["angle_deg"] = angles.masked_fill(keep, 0.0)
        params["shift_px"] = shifts.masked_fill(keep.unsqueeze(-1), 0.0)
        params["times"] = times
        return params

    def apply(
        self, u: torch.Tensor, angle_deg: torch.Tensor, shift_px: torch.Tensor, times: torch.Tensor,
        reference_lines: int | None = None,
    ) -> torch.Tensor:
        return motion(u, angle_deg, shift_px, times, reference_lines=reference_lines)


# --------------------------------------------------------------------------------------------------
# Cartesian undersampling


def cartesian_mask(
    batch: int,
    width: int,
    acceleration: float,
    center_fraction: float,
    pattern: str,
    generator: RandomSource,
    device: torch.device,
    reference_lines: int | None = None,
) -> torch.Tensor:
    """Per-image phase-encode line masks (B, W) bool, centred k-space, as fastMRI's mask functions.

    ``reference_lines`` None: acceleration and centre fraction refer to this matrix (fastMRI).
    Otherwise they describe an acquisition of ``reference_lines`` lines over the same field of
    view, and the same density per cycle per field of view is laid on this matrix: the central
    ``round(reference_lines * center_fraction)`` lines (at most W) are kept and every other line
    with the probability (or spacing) that acceleration gives at the reference matrix.
 ``pattern="random"``
    (fastMRI ``RandomMaskFunc``): every other line with probability
    ``(W / R - n_low) / (W - n_low)``. ``pattern="equispaced"`` (``EquispacedMaskFunc``): the lines ``round(offset + k R')``
    below W - 1, with R' adjusted so that about W / R lines are kept (a fractional spacing) and
    offset uniform in 0 .. round(R') - 1. Both equal MONAI's ``RandomKspaceMask`` /
    ``EquispacedKspaceMask`` for the same draws (tests/test_references.py).
    """
    ref = width if reference_lines is None else int(reference_lines)
    n_low_ref = int(round(ref * center_fraction))
    n_low = min(n_low_ref, width)
    pad = (width - n_low + 1) // 2
    centre = torch.zeros(width, dtype=torch.bool, device=device)
    centre[pad : pad + n_low] = True
    if pattern == "random":
        prob = (ref / acceleration - n_low_ref) / max(ref - n_low_ref, 1)
        mask = rand((batch, width), generator, device) < prob
    elif pattern == "equispaced":
        if n_low_ref * acceleration != ref:
            adjusted = acceleration * (n_low_ref - ref) / (n_low_ref * acceleration - ref)
        else:
            adjusted = acceleration
        # fastMRI / MONAI: lines round(offset + k * adjusted) below W - 1 (a fractional spacing,
        # rounded half to even as numpy), offset uniform in 0 .. round(adjusted) - 1
        step = max(1, int(round(adjusted)))
        offset = torch.floor(rand((batch, 1), generator, device) * step).to(torch.float64)
        k = torch.arange(int(math.ceil(width / adjusted)) + 1, device=device, dtype=torch.float64)
        pos = offset + k.view(1, -1) * adjusted  # (B, K)
        cols = torch.where(pos < width - 1, torch.round(pos).long(), torch.full_like(pos, width, dtype=torch.long))
        mask = torch.zeros(batch, width + 1, dtype=torch.bool, device=device).scatter_(1, cols, True)[:, :width]
    else:
        raise ValueError(f"pattern must be 'random' or 'equispaced', got {pattern!r}")
    return mask | centre.view(1, width)


def undersample(u: torch.Tensor, line_mask: torch.Tensor, output: Output = "magnitude") -> torch.Tensor:
    """Zero-filled reconstruction of (B, 1, H, W) images keeping the k-space columns where
    ``line_mask`` (B, W) is True (no density compensation)."""
    b, _, h, w = u.shape
    m = line_mask.to(u.device).view(b, 1, 1, w)
    return _to_image(_along_w(u, m), output, u.dtype)


@register
class Undersampling(Perturbation):
    """Cartesian undersampling at acceleration R (unitless) with a fully sampled centre fraction,
    zero-filled magnitude reconstruction; ``pattern`` "random" (default) or "equispaced" lines.
    R and the centre fraction are those of a :data:`REFERENCE_LINES`-line acquisition of the field
    of view (see :func:`cartesian_mask`)."""

    name = "undersampling"
    family = "kspace"
    stochastic = True
    severities = {
        1: {"acceleration": 1.5, "center_fraction": 0.24, "reference_lines": REFERENCE_LINES},
        2: {"acceleration": 1.75, "center_fraction": 0.16, "reference_lines": REFERENCE_LINES},
        3: {"acceleration": 2.3, "center_fraction": 0.10, "reference_lines": REFERENCE_LINES},
        4: {"acceleration": 4.3, "center_fraction": 0.06, "reference_lines": REFERENCE_LINES},
        5: {"acceleration": 8.0, "center_fraction": 0.04, "reference_lines": REFERENCE_LINES},
    }

    def __init__(self, pattern: str = "random") -> None:
        if pattern not in ("random", "equispaced"):
            from robustmri.errors import ConfigError

            raise ConfigError(f"undersampling pattern={pattern!r} is unknown; use 'random' or 'equispaced'")
        self.pattern = pattern

    def sample(self, params: Params, shape: torch.Size, generator: RandomSource, device: torch.device) -> Params:
        r = float(params.pop("acceleration"))
        cf = float(params.pop("center_fraction"))
        ref = params.pop("reference_lines", None)
        params["line_mask"] = cartesian_mask(shape[0], shape[-1], r, cf, self.pattern, generator, device, ref)
        return params

    def apply(self, u: torch.Tensor, line_mask: torch.Tensor) -> torch.Tensor:
        return undersample(u, line_mask)


__all__ = [
    "band_limit",
    "fft2c",
    "ifft2c",
    "ghosting",
    "spike",
    "motion",
    "cartesian_mask",
    "undersample",
]
