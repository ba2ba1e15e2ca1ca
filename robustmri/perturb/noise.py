"""Noise perturbations (family ``noise``): additive Gaussian and Rician (magnitude) noise.

Units: ``sigma`` is the noise standard deviation as a fraction of the data range (with the default
range [0, 1], in intensity units). Severity tables were calibrated with
``benchmarks/calibrate_perturb.py`` (see docs/perturbations.md).
"""

from __future__ import annotations

import torch

from robustmri.perturb.base import Params, Perturbation, randn, register


def gaussian_noise(u: torch.Tensor, sigma: float, noise: torch.Tensor) -> torch.Tensor:
    """``u + sigma * noise``; ``noise`` is standard normal, same shape as ``u`` (B, 1, H, W)."""
    return u + sigma * noise


def rician_noise(u: torch.Tensor, sigma: float, noise_re: torch.Tensor, noise_im: torch.Tensor) -> torch.Tensor:
    """Magnitude of complex Gaussian noise added to the signal: ``|u + sigma*n1 + i*sigma*n2|``.

    On a zero background the result is Rayleigh distributed with mean ``sigma * sqrt(pi / 2)``: the
    positive background bias of magnitude MR images.
    """
    return torch.sqrt((u + sigma * noise_re) ** 2 + (sigma * noise_im) ** 2)


@register
class GaussianNoise(Perturbation):
    """Additive white Gaussian noise; sigma = std as a fraction of the data range.

    Not what MR magnitude images show (see ``rician_noise``) but the common benchmark baseline
    (ImageNet-C, TorchIO's ``Noise``). Severities are log-spaced in sigma.
    """

    name = "gaussian_noise"
    family = "noise"
    stochastic = True
    severities = {
        1: {"sigma": 0.018},
        2: {"sigma": 0.029},
        3: {"sigma": 0.048},
        4: {"sigma": 0.079},
        5: {"sigma": 0.13},
    }

    def sample(self, params: Params, shape: torch.Size, generator: torch.Generator, device: torch.device) -> Params:
        params["noise"] = randn(tuple(shape), generator, device)
        return params

    def apply(self, u: torch.Tensor, sigma: float, noise: torch.Tensor) -> torch.Tensor:
        return gaussian_noise(u, sigma, noise)


@register
class RicianNoise(Perturbation):
    """Rician noise: magnitude of the signal plus complex Gaussian noise (std sigma per channel).

    sigma is a fraction of the data range. Brightens the background by about sigma*sqrt(pi/2).
    """

    name = "rician_noise"
    family = "noise"
    stochastic = True
    severities = {
        1: {"sigma": 0.018},
        2: {"sigma": 0.029},
        3: {"sigma": 0.048},
        4: {"sigma": 0.079},
        5: {"sigma": 0.13},
    }

    def sample(self, params: Params, shape: torch.Size, generator: torch.Generator, device: torch.device) -> Params:
        params["noise_re"] = randn(tuple(shape), generator, device)
        params["noise_im"] = randn(tuple(shape), generator, device)
        return params

    def apply(self, u: torch.Tensor, sigma: float, noise_re: torch.Tensor, noise_im: torch.Tensor) -> torch.Tensor:
        return rician_noise(u, sigma, noise_re, noise_im)
