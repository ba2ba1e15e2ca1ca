"""Noise perturbations (family ``noise``): additive Gaussian and Rician (magnitude) noise.

Units: severities are SNRs, the mean brain signal over the noise standard deviation per channel
(:func:`robustmri.perturb.base.brain_signal`), so a severity means the same whatever the image's
brightness and size. The cores take ``sigma`` in normalised intensity units (a float or one value
per image). Noise is added to the whole field of view. Severity tables were calibrated with
``benchmarks/calibrate_perturb.py`` (see docs/perturbations.md).
"""

from __future__ import annotations

import torch

from robustmri.perturb.base import Params, Perturbation, brain_signal, randn, register
from robustmri.rng import RandomSource

#: Severity 1..5 as SNR (mean brain signal / noise std). See docs/perturbations.md for the sources.
NOISE_SNR = {1: 36.0, 2: 22.0, 3: 13.0, 4: 8.0, 5: 4.7}


def _per_image(v: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor | float:
    if isinstance(v, torch.Tensor) and v.ndim == 1:
        return v.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)
    return v


def gaussian_noise(u: torch.Tensor, sigma: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``u + sigma * noise``; ``noise`` is standard normal, same shape as ``u`` (B, 1, H, W);
    ``sigma`` a float or (B,)."""
    return u + _per_image(sigma, u) * noise


def rician_noise(
    u: torch.Tensor, sigma: float | torch.Tensor, noise_re: torch.Tensor, noise_im: torch.Tensor
) -> torch.Tensor:
    """Magnitude of complex Gaussian noise added to the signal: ``|u + sigma*n1 + i*sigma*n2|``.

    On a zero background the result is Rayleigh distributed with mean ``sigma * sqrt(pi / 2)``: the
    positive background bias of magnitude MR images. ``sigma``: a float or (B,).
    """
    s = _per_image(sigma, u)
    return torch.sqrt((u + s * noise_re) ** 2 + (s * noise_im) ** 2)


def snr_sigma(u: torch.Tensor, mask: torch.Tensor | None, snr: float) -> torch.Tensor:
    """Noise std (B,) in normalised units giving ``snr`` = mean brain signal / std for each image."""
    return brain_signal(u, mask) / float(snr)


@register
class GaussianNoise(Perturbation):
    """Additive white Gaussian noise over the whole image at a given SNR (mean brain signal / std).

    Not what MR magnitude images show (see ``rician_noise``) but the common benchmark baseline
    (ImageNet-C, TorchIO's ``Noise``). Severities are log-spaced in SNR.
    """

    name = "gaussian_noise"
    grid_invariance = "pixel"
    family = "noise"
    stochastic = True
    severities = {k: {"snr": v} for k, v in NOISE_SNR.items()}

    def resolve(self, params: Params, u: torch.Tensor, mask: torch.Tensor | None, spacing: torch.Tensor | None) -> Params:
        if "snr" in params:
            params["sigma"] = snr_sigma(u, mask, params.pop("snr"))
        return params

    def sample(self, params: Params, shape: torch.Size, generator: RandomSource, device: torch.device) -> Params:
        params["noise"] = randn(tuple(shape), generator, device)
        return params

    def apply(self, u: torch.Tensor, sigma: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return gaussian_noise(u, sigma, noise)


@register
class RicianNoise(Perturbation):
    """Rician noise at a given SNR: magnitude of the signal plus complex Gaussian noise whose std
    per channel is the mean brain signal / SNR. Brightens the background by about sigma*sqrt(pi/2).
    """

    name = "rician_noise"
    grid_invariance = "pixel"
    family = "noise"
    stochastic = True
    severities = {k: {"snr": v} for k, v in NOISE_SNR.items()}

    def resolve(self, params: Params, u: torch.Tensor, mask: torch.Tensor | None, spacing: torch.Tensor | None) -> Params:
        if "snr" in params:
            params["sigma"] = snr_sigma(u, mask, params.pop("snr"))
        return params

    def sample(self, params: Params, shape: torch.Size, generator: RandomSource, device: torch.device) -> Params:
        params["noise_re"] = randn(tuple(shape), generator, device)
        params["noise_im"] = randn(tuple(shape), generator, device)
        return params

    def apply(self, u: torch.Tensor, sigma: float | torch.Tensor, noise_re: torch.Tensor, noise_im: torch.Tensor) -> torch.Tensor:
        return rician_noise(u, sigma, noise_re, noise_im)
