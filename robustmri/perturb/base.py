"""Base class, registry and shared helpers of the perturbation library.

Every perturbation is a small class with

- a **deterministic core** (:meth:`Perturbation.apply`): explicit parameters -> output, for one batch
  of images already mapped to normalised intensities ``u`` in [0, 1];
- a **severity table** (:attr:`Perturbation.severities`): severity 1..5 -> parameter dict;
  severity 0 is the identity and returns exactly the input (same tensor values, a copy);
- a **sampler** (:meth:`Perturbation.sample`): per-image random draws (noise fields, spike
  positions, motion parameters, ...) taken from ONE random source: a :class:`torch.Generator`
  (a seed fixes the whole batch while images inside the batch still get different draws) or a
  :class:`robustmri.rng.KeyedStream` (one stream per image: the draws of an image do not depend
  on the batch it is in, nor on the device; the bench scores this way). Every draw has the batch
  as its first dimension.

This is the split of TorchIO's ``Random*`` (sampling) / deterministic transform pair.

Intensity convention: the input lives in the protocol's intensity range ``data_range=(lo, hi)``
(default ``(0, 1)``). :meth:`Perturbation.__call__` maps it to ``u = (x - lo) / (hi - lo)``, applies
the core in those normalised units, maps back and clamps to ``[lo, hi]``.

Physical units: severity tables are written in the units of the scanner, not of the pixel grid.
Lengths are in mm (blur FWHM, shifts, acquired voxel size), angles in degrees, noise as an SNR
(mean brain signal / noise standard deviation), k-space quantities as fractions. A perturbation
whose table holds lengths (:attr:`Perturbation.needs_spacing`) needs the images' in-plane pixel
spacing ``spacing_mm`` (a float, or one value per image (B,)); :meth:`Perturbation.resolve` turns
the physical parameters into the pixel parameters of the deterministic core. A severity then means
the same at 64, 128 and 256 pixels.

Field of view: every corruption acts on the whole image, background included, as the scanner
makes it. The brain ``mask`` (bool, (B, 1, H, W)) is never used to confine a corruption; it only
defines the brain signal that an SNR refers to (without a mask: the pixels above 10 % of each
image's maximum).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from robustmri.errors import ConfigError, DataError, did_you_mean
from robustmri import rng
from robustmri.rng import KeyedStream, RandomSource
from robustmri.rng import derive_seed as derive_seed  # re-exported: it lives in robustmri.rng

Params = dict[str, Any]

#: name -> perturbation class. Filled by :func:`register` when the family modules are imported.
PERTURBATIONS: dict[str, type[Perturbation]] = {}

#: The family names, in display order.
FAMILIES: tuple[str, ...] = ("noise", "image", "kspace", "geometric", "adversarial")

MAX_SEVERITY = 5


def register(cls: type[Perturbation]) -> type[Perturbation]:
    """Class decorator: add ``cls`` to :data:`PERTURBATIONS` under ``cls.name``."""
    if not cls.name or cls.name in PERTURBATIONS:
        raise RuntimeError(f"perturbation name {cls.name!r} is empty or registered twice")
    if cls.family not in FAMILIES:
        raise RuntimeError(f"perturbation {cls.name!r} has unknown family {cls.family!r}")
    if sorted(cls.severities) != list(range(1, MAX_SEVERITY + 1)):
        raise RuntimeError(f"perturbation {cls.name!r} must define severities 1..{MAX_SEVERITY}")
    PERTURBATIONS[cls.name] = cls
    return cls


def list_perturbations(family: str | None = None, include_adversarial: bool = True) -> list[str]:
    """Registered perturbation names (sorted by family, then name), optionally of one family."""
    from robustmri.plugins import load_plugins

    load_plugins()
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"unknown perturbation family {family!r}; use one of {', '.join(FAMILIES)}")
    names = [
        n
        for n, c in PERTURBATIONS.items()
        if (family is None or c.family == family) and (include_adversarial or c.family != "adversarial")
    ]
    return sorted(names, key=lambda n: (FAMILIES.index(PERTURBATIONS[n].family), n))


def get_perturbation(name: str, **options: Any) -> Perturbation:
    """Instantiate the registered perturbation ``name`` (options go to its constructor)."""
    from robustmri.plugins import load_plugins

    load_plugins()
    try:
        cls = PERTURBATIONS[name]
    except KeyError:
        raise ConfigError(
            f"unknown perturbation {name!r}{did_you_mean(name, list_perturbations())}; use one of: {', '.join(list_perturbations())}"
        ) from None
    return cls(**options)


def make_generator(seed: int | RandomSource | None, device: torch.device | str = "cpu") -> RandomSource:
    """Return ``seed`` if it is a generator or a :class:`~robustmri.rng.KeyedStream`, else a new
    generator seeded with ``seed`` (None -> 0)."""
    if isinstance(seed, (torch.Generator, KeyedStream)):
        return seed
    gen = torch.Generator(device=device)
    gen.manual_seed(0 if seed is None else int(seed))
    return gen


def randn(shape: tuple[int, ...], generator: RandomSource, device: torch.device) -> torch.Tensor:
    """Standard normal float32 draws of ``shape`` from ``generator``, returned on ``device``.
    With a :class:`~robustmri.rng.KeyedStream`, ``shape[0]`` is the batch and each row draws from its own stream."""
    return rng.normal(shape, generator, device)


def rand(shape: tuple[int, ...], generator: RandomSource, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) float32 draws of ``shape`` from ``generator``, returned on ``device`` (as :func:`randn`)."""
    return rng.uniform(shape, generator, device)


def random_sign(shape: tuple[int, ...], generator: RandomSource, device: torch.device) -> torch.Tensor:
    """Random +-1 float32 values of ``shape`` from ``generator``."""
    return torch.where(rand(shape, generator, device) < 0.5, -1.0, 1.0)


def check_images(x: torch.Tensor, what: str = "x") -> None:
    """Raise :class:`DataError` unless ``x`` is a floating (B, 1, H, W) tensor."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{what} must be a torch.Tensor of shape (B, 1, H, W), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 1:
        raise DataError(f"{what} has shape {tuple(x.shape)}; pass images as (B, 1, H, W), e.g. x[:, None]")
    if not x.is_floating_point():
        raise DataError(f"{what} has dtype {x.dtype}; convert it with x.float()")


def check_mask(mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """Validate an optional brain mask against ``x``; return it as bool on ``x``'s device."""
    if mask is None:
        return None
    if mask.shape != x.shape:
        raise DataError(f"mask has shape {tuple(mask.shape)} but images have {tuple(x.shape)}; pass a (B, 1, H, W) mask")
    return mask.to(device=x.device, dtype=torch.bool)


def check_range(data_range: tuple[float, float]) -> tuple[float, float]:
    """Validate ``data_range=(lo, hi)`` with hi > lo."""
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise ConfigError(f"data_range={data_range!r} is not a pair of numbers; pass e.g. (0.0, 1.0)") from None
    if not hi > lo:
        raise ConfigError(f"data_range={data_range!r} needs hi > lo; pass e.g. (0.0, 1.0) or (-1.0, 1.0)")
    return lo, hi


def check_spacing(spacing_mm: float | torch.Tensor | None, x: torch.Tensor, name: str) -> torch.Tensor:
    """Validate the in-plane pixel spacing: a positive float or (B,) tensor of mm -> (B,) float64 on CPU."""
    if spacing_mm is None:
        need_spacing(None, name)  # raises the one-line error naming the fix
    sp = torch.as_tensor(spacing_mm, dtype=torch.float64).detach().cpu().flatten()
    if sp.numel() == 1:
        sp = sp.expand(x.shape[0]).clone()
    if sp.numel() != x.shape[0]:
        raise DataError(f"spacing_mm has {sp.numel()} values for {x.shape[0]} images; pass one float or one per image")
    if not bool(torch.isfinite(sp).all()) or bool((sp <= 0).any()):
        raise DataError(f"spacing_mm must be positive and finite (mm per pixel), got {sp.tolist()}")
    return sp


def need_spacing(spacing: torch.Tensor | None, name: str) -> torch.Tensor:
    """``spacing`` (B,) mm, or the one-line error saying that ``name`` needs it."""
    if spacing is None:
        raise ConfigError(
            f"perturbation {name!r} has lengths in mm and needs the images' pixel spacing: pass spacing_mm= "
            "(mm per pixel, e.g. 210 / 128 for the embedded data at 128 x 128)"
        )
    return spacing


def brain_signal(u: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean signal (B,) of ``u`` (B, 1, H, W) inside the brain ``mask``; without a mask (or an empty
    one), over the pixels above 10 % of each image's maximum. The reference an SNR refers to."""
    b = u.shape[0]
    flat = u.detach().flatten(1).float()
    fg = flat > 0.1 * flat.amax(dim=1, keepdim=True)
    if mask is not None:
        mflat = mask.flatten(1)
        has = mflat.any(dim=1, keepdim=True)
        fg = torch.where(has, mflat, fg)
    w = fg.float()
    mean = (flat * w).sum(1) / w.sum(1).clamp(min=1.0)
    return torch.where(mean > 0, mean, torch.ones(b, device=u.device))


def check_severity(severity: int) -> int:
    """Validate a severity (integer 0..5)."""
    if isinstance(severity, bool) or int(severity) != severity or not 0 <= int(severity) <= MAX_SEVERITY:
        raise ConfigError(f"severity={severity!r} is invalid; use an integer from 0 (clean) to {MAX_SEVERITY}")
    return int(severity)


class Perturbation:
    """Base class. Subclasses set the class attributes and implement :meth:`apply` (and
    :meth:`sample` when they are random).

    Call ``p(x, severity, mask=None, generator=None, data_range=(0, 1))``; see the module docstring.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    #: severity (1..5) -> parameters of :meth:`apply` (units documented by each subclass).
    severities: ClassVar[Mapping[int, Params]] = {}
    #: True when :meth:`sample` draws random numbers (seed matters).
    stochastic: ClassVar[bool] = False
    #: True for attacks, which need a model (see :mod:`robustmri.perturb.adversarial`).
    needs_model: ClassVar[bool] = False
    #: True for attacks that need the model's gradients (FGSM, PGD); black-box attacks and
    #: corruptions run on any model, including an external one without gradients.
    white_box: ClassVar[bool] = False
    #: True when the severity table holds lengths in mm (then ``spacing_mm`` is required).
    needs_spacing: ClassVar[bool] = False
    #: How a severity stays the same on grids of different size. ``"band"``: it acts on the imaged
    #: object, so the same subject on a coarse grid and on a fine grid seen in the coarse grid's
    #: band (:func:`robustmri.perturb.kspace.band_limit`) lose the same PSNR. ``"pixel"``: it is
    #: defined per sample (an SNR per pixel, a spike's share of the k-space energy), so the same
    #: severity gives the same PSNR on each grid at its own resolution.
    grid_invariance: ClassVar[str] = "band"

    def params(self, severity: int) -> Params:
        """The parameter dict of ``severity`` (1..5); a copy, safe to modify."""
        sev = check_severity(severity)
        if sev == 0:
            raise ConfigError(f"severity 0 of {self.name!r} is the identity and has no parameters; use 1..5")
        return dict(self.severities[sev])

    def resolve(self, params: Params, u: torch.Tensor, mask: torch.Tensor | None, spacing: torch.Tensor | None) -> Params:
        """Physical parameters -> the core's parameters for the batch ``u`` (B, 1, H, W).

        ``spacing`` is the (B,) pixel spacing in mm (None when not given: then a physical length is
        an error, see :func:`need_spacing`); ``mask`` the optional brain mask (for signal
        statistics only). Explicit core parameters (e.g. ``sigma`` in pixels) pass through.
        Default: unchanged."""
        return params

    def sample(self, params: Params, shape: torch.Size, generator: RandomSource, device: torch.device) -> Params:
        """Add per-image random draws to ``params`` (batch of ``shape``). Default: none."""
        return params

    def apply(self, u: torch.Tensor, **params: Any) -> torch.Tensor:
        """Deterministic core on normalised images ``u`` (B, 1, H, W) in [0, 1]; no clamping."""
        raise NotImplementedError

    def __call__(
        self,
        x: torch.Tensor,
        severity: int,
        mask: torch.Tensor | None = None,
        generator: RandomSource | int | None = None,
        data_range: tuple[float, float] = (0.0, 1.0),
        spacing_mm: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Corrupt ``x`` (B, 1, H, W) at ``severity`` (0..5); returns the same shape, dtype and device.

        ``generator`` may be a :class:`torch.Generator`, an int seed or None (seed 0);
        ``spacing_mm``: in-plane pixel spacing (mm, float or (B,)), required when
        :attr:`needs_spacing`; ``mask``: brain mask for signal statistics (never confines).
        """
        check_images(x)
        sev = check_severity(severity)
        lo, hi = check_range(data_range)
        m = check_mask(mask, x)
        if self.needs_spacing:
            check_spacing(spacing_mm, x, self.name)
        if sev == 0:
            return x.clone()
        return self.run(x, self.params(sev), mask=m, generator=generator, data_range=(lo, hi), spacing_mm=spacing_mm)

    def run(
        self,
        x: torch.Tensor,
        params: Params,
        mask: torch.Tensor | None = None,
        generator: RandomSource | int | None = None,
        data_range: tuple[float, float] = (0.0, 1.0),
        spacing_mm: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Like :meth:`__call__` with explicit (physical) ``params`` instead of a severity."""
        check_images(x)
        lo, hi = check_range(data_range)
        m = check_mask(mask, x)
        sp = check_spacing(spacing_mm, x, self.name) if self.needs_spacing and spacing_mm is not None else None
        gen = make_generator(generator)
        u = (x.to(torch.promote_types(x.dtype, torch.float32)) - lo) / (hi - lo)
        full = self.resolve(dict(params), u, m, sp)
        full = self.sample(full, x.shape, gen, x.device)
        out = self.apply(u, **full)
        out = out * (hi - lo) + lo
        return out.clamp(lo, hi).to(x.dtype)

    @classmethod
    def describe(cls) -> str:
        """First line of the class docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else cls.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, family={self.family!r})"
