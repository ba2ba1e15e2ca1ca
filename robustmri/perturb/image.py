"""Image-domain perturbations (family ``image``): Gaussian blur, bias field, gamma (contrast) shift,
resolution loss. All work on batches (B, 1, H, W); blur and resolution loss take their severity in
mm (FWHM, acquired voxel size) and need the pixel spacing, so they loop only over the distinct
spacings of a batch (one, in practice).
"""

from __future__ import annotations

import math

import torch

from robustmri.perturb.base import Params, Perturbation, need_spacing, rand, random_sign, register
from robustmri.rng import RandomSource

# --------------------------------------------------------------------------------------------------
# Gaussian blur


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, device: torch.device | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian kernel with std ``sigma`` pixels and radius ``int(truncate*sigma+0.5)``
    (the radius rule of ``scipy.ndimage.gaussian_filter``)."""
    radius = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return k / k.sum()


def symmetric_pad_index(n: int, radius: int, device: torch.device | None = None) -> torch.Tensor:
    """Indices of a length-``n`` axis padded by ``radius`` on both sides with half-sample symmetric
    reflection (``d c b a | a b c d | d c b a``, scipy's ``mode='reflect'``), valid for any radius."""
    idx = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""FWHM of a Gaussian in units of its standard deviation (about 2.355)."""


def per_image_groups(value: float | torch.Tensor, batch: int) -> list[tuple[float, torch.Tensor | slice]]:
    """``[(v, rows)]``: the distinct values of a float or (B,) ``value`` and the rows holding each."""
    if not isinstance(value, torch.Tensor) or value.ndim == 0:
        return [(float(value), slice(None))]
    vals = value.detach().cpu().double()
    return [(float(v), torch.nonzero(vals == v).flatten()) for v in torch.unique(vals)]


def _grouped(u: torch.Tensor, value: float | torch.Tensor, core) -> torch.Tensor:  # type: ignore[no-untyped-def]
    groups = per_image_groups(value, u.shape[0])
    if len(groups) == 1:
        return core(u, groups[0][0])
    out = torch.empty_like(u)
    for v, rows in groups:
        out[rows.to(u.device)] = core(u[rows.to(u.device)], v)  # type: ignore[union-attr]
    return out


def gaussian_blur(u: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) images with std ``sigma`` pixels (a float or one
    value per image (B,)) on both axes.

    Boundary: half-sample symmetric reflection; kernel truncated at 4 sigma. Numerically equal to
    ``scipy.ndimage.gaussian_filter(img, sigma)`` (and so to TorchIO's ``Blur`` at 1 mm spacing).
    """
    if isinstance(sigma, torch.Tensor):
        return _grouped(u, sigma, gaussian_blur)
    if sigma <= 0:
        return u.clone()
    k = gaussian_kernel1d(sigma, device=u.device)
    h, w = u.shape[-2:]
    # Each 1-D pass is a product with an (n, n) matrix holding the kernel and the reflections: one
    # BLAS call per axis, whatever sigma (a direct convolution slows down linearly with the kernel).
    rows = blur_matrix(k, h).to(u.dtype)  # (H, H)
    cols = blur_matrix(k, w).to(u.dtype)  # (W, W)
    return torch.matmul(torch.matmul(rows.T, u), cols)


def band_limited_gaussian_blur(u: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Gaussian blur of (B, 1, H, W) images seen as samples of a band-limited object: the spectrum
    is multiplied by the continuous Gaussian's transfer function ``exp(-2 pi^2 sigma^2 f^2)``
    (``sigma`` in pixels, ``f`` in cycles per pixel; a float or one value per image (B,)).

    This is what a physical blur of the imaged object does to its samples, at any sigma: a
    sampled kernel (:func:`gaussian_blur`, scipy's) is nearly the identity below one pixel
    (sigma 0.3 px keeps 99.6 % of the centre tap) where the true blur still halves the energy at
    Nyquist, so sub-pixel blurs would vanish on coarse grids. From sigma of about 1 px on the two
    agree (largest difference 1e-3 of the data range at sigma 1 px). Boundary: half-sample
    symmetric (the image is mirrored on both axes before the FFT), no truncation.
    """
    if isinstance(sigma, torch.Tensor):
        return _grouped(u, sigma, band_limited_gaussian_blur)
    if sigma <= 0:
        return u.clone()
    h, w = u.shape[-2:]
    ext = torch.cat([u, u.flip(-2)], dim=-2)
    ext = torch.cat([ext, ext.flip(-1)], dim=-1)  # (B, 1, 2H, 2W): periodic = mirrored image
    work = ext.double() if u.dtype == torch.float64 else ext.float()
    fy = torch.fft.fftfreq(2 * h, device=u.device, dtype=work.dtype).view(-1, 1)
    fx = torch.fft.rfftfreq(2 * w, device=u.device, dtype=work.dtype).view(1, -1)
    transfer = torch.exp(-2.0 * math.pi**2 * float(sigma) ** 2 * (fy**2 + fx**2))
    out = torch.fft.irfft2(torch.fft.rfft2(work) * transfer, s=(2 * h, 2 * w))
    return out[..., :h, :w].to(u.dtype)


def blur_matrix(kernel: torch.Tensor, n: int) -> torch.Tensor:
    """The (n, n) matrix ``M`` with ``(x @ M)[i] = sum_j kernel[j] x[reflect(i + j - r)]``: 1-D
    correlation with the odd-length ``kernel`` (radius r) under half-sample symmetric reflection."""
    r = (kernel.numel() - 1) // 2
    src = symmetric_pad_index(n, r, kernel.device).unfold(0, 2 * r + 1, 1)  # (n, 2r+1) source of each tap
    out = torch.arange(n, device=kernel.device).view(n, 1).expand_as(src)
    m = torch.zeros(n, n, dtype=kernel.dtype, device=kernel.device)
    return m.index_put_((src.reshape(-1), out.reshape(-1)), kernel.repeat(n), accumulate=True)


@register
class GaussianBlur(Perturbation):
    """Gaussian blur of isotropic FWHM ``fwhm_mm`` (mm) applied to the imaged object: the core
    (:func:`band_limited_gaussian_blur`) multiplies the spectrum by the Gaussian's transfer
    function with std ``fwhm_mm / 2.355 / spacing`` pixels, so a blur finer than a pixel still
    acts on a coarse grid as it would on the object (the same subject at 64 and 256 px loses the
    same PSNR once both are compared in the band they share)."""

    name = "gaussian_blur"
    family = "image"
    needs_spacing = True
    severities = {
        1: {"fwhm_mm": 2.1},
        2: {"fwhm_mm": 3.3},
        3: {"fwhm_mm": 5.7},
        4: {"fwhm_mm": 10.7},
        5: {"fwhm_mm": 23.0},
    }

    def resolve(self, params: Params, u: torch.Tensor, mask: torch.Tensor | None, spacing: torch.Tensor | None) -> Params:
        if "fwhm_mm" in params:
            params["sigma"] = (float(params.pop("fwhm_mm")) / FWHM_PER_SIGMA) / need_spacing(spacing, self.name)
        return params

    def apply(self, u: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        return band_limited_gaussian_blur(u, sigma)


# --------------------------------------------------------------------------------------------------
# Bias field


def polynomial_terms(order: int) -> list[tuple[int, int]]:
    """Exponents (i, j) of the 2-D monomials x^i y^j with i + j <= order, in TorchIO's loop order
    (i outer over rows, j inner over columns)."""
    return [(i, j) for i in range(order + 1) for j in range(order + 1 - i)]


def _centred_axis(n: int, device: torch.device) -> torch.Tensor:
    c = torch.arange(n, dtype=torch.float32, device=device) - (n - 1) / 2.0
    return c / max((n - 1) / 2.0, 1.0) if n > 1 else c  # the largest |c| is known: no read back


def bias_field_map(shape: tuple[int, int], coefficients: torch.Tensor, order: int) -> torch.Tensor:
    """Multiplicative field ``exp(sum_k c_k x^i y^j)`` of shape (B, 1, H, W).

    ``coefficients`` is (B, K) with K = len(polynomial_terms(order)); x runs over rows (H) and y over
    columns (W), both scaled to [-1, 1] at the outermost pixel centres, as in TorchIO's ``BiasField``.
    """
    h, w = shape
    dev = coefficients.device
    x = _centred_axis(h, dev).view(h, 1)
    y = _centred_axis(w, dev).view(1, w)
    basis = torch.stack([x**i * y**j for i, j in polynomial_terms(order)])  # (K, H, W)
    log_field = torch.einsum("bk,khw->bhw", coefficients.float(), basis)
    return torch.exp(log_field).unsqueeze(1)


def bias_field(u: torch.Tensor, coefficients: torch.Tensor, order: int = 3) -> torch.Tensor:
    """``u * exp(polynomial)``; see :func:`bias_field_map`."""
    return u * bias_field_map(tuple(u.shape[-2:]), coefficients, order).to(u.dtype)


@register
class BiasField(Perturbation):
    """Smooth multiplicative bias field exp(polynomial of order 3) with random coefficients.

    Each image draws its coefficients uniformly from [-c, c] (c = ``coefficient``, unitless log-gain
    at the image border), as TorchIO's ``RandomBiasField``.
    """

    name = "bias_field"
    family = "image"
    stochastic = True
    severities = {
        1: {"coefficient": 0.044, "order": 3},
        2: {"coefficient": 0.072, "order": 3},
        3: {"coefficient": 0.12, "order": 3},
        4: {"coefficient": 0.2, "order": 3},
        5: {"coefficient": 0.33, "order": 3},
    }

    def sample(self, params: Params, shape: torch.Size, generator: RandomSource, device: torch.device) -> Params:
        k = len(polynomial_terms(int(params["order"])))
        c = float(params.pop("coefficient"))
        params["coefficients"] = (2.0 * rand((shape[0], k), generator, device) - 1.0) * c
        return params

    def apply(self, u: torch.Tensor, coefficients: torch.Tensor, order: int = 3) -> torch.Tensor:
        return bias_field(u, coefficients, order)


# --------------------------------------------------------------------------------------------------
# Gamma / contrast


def gamma_shift(u: torch.Tensor, gamma: torch.Tensor | float) -> torch.Tensor:
    """``u ** gamma`` on normalised intensities (negative values are first clipped to 0).

    ``gamma`` is a float or a (B,) tensor (one exponent per image).
    """
    g = torch.as_tensor(gamma, dtype=u.dtype, device=u.device)
    if g.ndim == 1:
        g = g.view(-1, 1, 1, 1)
    return u.clamp(min=0.0) ** g


@register
class Gamma(Perturbation):
    """Contrast change by a power law u**gamma; each image gets gamma or 1/gamma at random.

    ``gamma`` (> 1, unitless) sets the strength; the random direction makes half the images darker
    in the mid-tones and half brighter.
    """

    name = "gamma"
    family = "image"
    stochastic = True
    severities = {
        1: {"gamma": 1.07},
        2: {"gamma": 1.12},
        3: {"gamma": 1.21},
        4: {"gamma": 1.36},
        5: {"gamma": 1.67},
    }

    def sample(self, params: Params, shape: torch.Size, generator: RandomSource, device: torch.device) -> Params:
        g = float(params["gamma"])
        params["gamma"] = torch.exp(random_sign((shape[0],), generator, device) * math.log(g))
        return params

    def apply(self, u: torch.Tensor, gamma: torch.Tensor | float) -> torch.Tensor:
        return gamma_shift(u, gamma)


# --------------------------------------------------------------------------------------------------
# Resolution loss


def kept_band(n: int, factor: float, device: torch.device | None = None) -> torch.Tensor:
    """(n,) bool in FFT order: the ``max(2, round(n / factor))`` lowest frequencies of an axis of
    ``n`` samples (centred on DC; one more negative than positive frequency when the count is
    even, as an even acquisition matrix samples them)."""
    keep = min(n, max(2, round(n / float(factor))))
    centred = torch.zeros(n, dtype=torch.bool, device=device)
    start = n // 2 - keep // 2
    centred[start : start + keep] = True
    return torch.fft.ifftshift(centred)


def resolution_loss(u: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """A lower acquired resolution: (B, 1, H, W) images keep only the central
    ``round(H / factor) x round(W / factor)`` k-space samples (at least 2 per axis) and are
    reconstructed zero-filled on their own grid, magnitude, no apodisation (so with the Gibbs
    ringing of a real low-resolution acquisition).

    ``factor``: acquired voxel / pixel spacing, a float or one value per image (B,); ``factor <= 1``
    returns the input. Truncating k-space is what acquiring fewer phase- and frequency-encode
    samples over the same field of view does, and it commutes with changing the display grid: the
    same voxel gives the same image on a 64 and a 256 grid once both are compared in the band they
    share (an image-domain resampling does not: a bicubic round trip also damps frequencies inside
    the kept band).
    """
    if isinstance(factor, torch.Tensor):
        return _grouped(u, factor, resolution_loss)
    if factor <= 1:
        return u.clone()
    h, w = u.shape[-2:]
    keep = kept_band(h, factor, u.device).view(h, 1) & kept_band(w, factor, u.device).view(1, w)
    work = u.double() if u.dtype == torch.float64 else u.float()
    return torch.fft.ifft2(torch.fft.fft2(work) * keep).abs().to(u.dtype)


@register
class ResolutionLoss(Perturbation):
    """Lower acquired resolution: an in-plane voxel of ``voxel_mm`` (mm), simulated by truncating
    k-space to the band of that voxel and reconstructing zero-filled on the image's grid
    (:func:`resolution_loss`; factor ``voxel_mm / spacing``). A voxel no larger than the pixel
    spacing leaves the image as is."""

    name = "resolution"
    family = "image"
    needs_spacing = True
    severities = {
        1: {"voxel_mm": 2.4},
        2: {"voxel_mm": 3.9},
        3: {"voxel_mm": 6.5},
        4: {"voxel_mm": 12.0},
        5: {"voxel_mm": 26.0},
    }

    def resolve(self, params: Params, u: torch.Tensor, mask: torch.Tensor | None, spacing: torch.Tensor | None) -> Params:
        if "voxel_mm" in params:
            params["factor"] = float(params.pop("voxel_mm")) / need_spacing(spacing, self.name)
        return params

    def apply(self, u: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
        return resolution_loss(u, factor)
