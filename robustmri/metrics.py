"""Image-quality metrics for translated MRI slices: PSNR, SSIM, MAE, NMSE (batched torch), and the
registry of metrics a protocol can score (:func:`register_metric` adds one).

Every metric takes a prediction and a target of shape (B, 1, H, W), floating point, on any device,
and returns one value per image: a float64 tensor of shape (B,) on the inputs' device. There is no
Python loop over images; SSIM is filtered in blocks of a few images (see :func:`ssim_map`).

Conventions
-----------
- ``data_range`` is the intensity span the metric is relative to (1.0 for images in [0, 1]); a
  float, or a tensor of shape (B,) giving one range per image. It must be finite and > 0.
- ``mask`` is an optional bool tensor (B, 1, H, W). Errors (MAE, NMSE, PSNR's MSE) are reduced over
  the mask's voxels only. SSIM is computed on the whole image and its map averaged within the mask
  intersected with SSIM's valid region (see :func:`ssim`).
- An image whose mask is empty scores NaN (no exception); aggregate with NaN-skipping means
  (:func:`robustmri.results.aggregate` does).
- Identical images give PSNR = +inf and MAE = NMSE = 0. An all-zero target gives NMSE = inf or NaN.
- Inputs of different float dtypes are promoted to a common dtype. Filtering runs in that dtype
  (float32 inputs are filtered in float32, as scikit-image does); every reduction is accumulated in
  float64. All operations are differentiable, so the metrics can serve as losses.

:func:`robustmri.results.aggregate` turns per-slice values into per-subject means and summary statistics.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from robustmri.errors import ConfigError, DataError

__all__ = [
    "BETTER",
    "DECIMALS",
    "LABELS",
    "METRICS",
    "MetricSpec",
    "Window",
    "list_metrics",
    "mae",
    "metric_spec",
    "mse",
    "nmse",
    "psnr",
    "register_metric",
    "ssim",
    "ssim_map",
    "ssim_pad",
]

METRICS: tuple[str, ...] = ("psnr", "ssim", "mae", "nmse")
"""Names of the built-in metrics, in the canonical order: the default protocol scores these, and
every results table has their columns. Registered metrics (:func:`register_metric`) come after."""

Window = Literal["gaussian", "uniform"]

# SSIM constants of Wang et al. (2004), as scikit-image uses them.
_K1 = 0.01
_K2 = 0.03
_GAUSS_SIGMA = 1.5
_GAUSS_TRUNCATE = 3.5  # scikit-image: gives an 11-tap window for sigma 1.5
_UNIFORM_SIZE = 7  # scikit-image's default window

# Pixels per block when filtering on a CPU. Filtering is memory-bound: with blocks that fit in the
# L2/L3 cache (about 4 slices of 256x256, 5 moment channels, float32 = 5 MiB) the shift-and-add
# passes run several times faster than over the whole batch at once, where every pass streams
# hundreds of MiB and fresh pages must be faulted in. On CUDA, large blocks are best.
_CPU_BLOCK_PIXELS = 1 << 18
_CUDA_BLOCK_PIXELS = 1 << 26


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _check_pair(pred: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Validate (B,1,H,W) float inputs and return them promoted to a common float dtype."""
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, Tensor):
            raise DataError(f"{name} must be a torch.Tensor of shape (B, 1, H, W), got {type(t).__name__}")
        if t.ndim != 4 or t.shape[1] != 1:
            raise DataError(
                f"{name} has shape {tuple(t.shape)}; expected (B, 1, H, W): add the channel axis with x[:, None]"
            )
        if not t.is_floating_point():
            raise DataError(f"{name} has dtype {t.dtype}; convert it to float32 or float64 with .float()")
    if pred.shape != target.shape:
        raise DataError(
            f"pred shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}; pass matching slices"
        )
    if pred.device != target.device:
        raise DataError(f"pred is on {pred.device} but target on {target.device}; move both to one device")
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise DataError("mask must be a bool torch.Tensor of shape (B, 1, H, W); convert it with mask.bool()")
        if mask.shape != pred.shape:
            raise DataError(f"mask shape {tuple(mask.shape)} differs from image shape {tuple(pred.shape)}")
        if mask.device != pred.device:
            raise DataError(f"mask is on {mask.device} but images on {pred.device}; move the mask to the images' device")
    dtype = torch.promote_types(pred.dtype, target.dtype)
    return pred.to(dtype), target.to(dtype)


def _range_tensor(data_range: float | Tensor, batch: int, device: torch.device) -> Tensor:
    """Return data_range as a float64 tensor of shape (B,) on ``device`` after checking it.

    A float, or a tensor on the CPU, that is not finite and > 0 is a ConfigError. A tensor on
    another device is not read back (that would make the host wait for the device at every
    batch): its entries that are not finite and > 0 give those images NaN instead."""
    if isinstance(data_range, Tensor):
        r = data_range.detach().to(device=device, dtype=torch.float64).reshape(-1)
        if r.numel() == 1:
            r = r.expand(batch)
        if r.numel() != batch:
            raise ConfigError(
                f"data_range has {r.numel()} values for a batch of {batch} images; pass a float or a (B,) tensor"
            )
    else:
        r = torch.full((batch,), float(data_range), dtype=torch.float64, device=device)
    if isinstance(data_range, Tensor) and data_range.device.type != "cpu":
        return torch.where(torch.isfinite(r) & (r > 0), r, torch.full_like(r, float("nan")))
    if not bool(torch.isfinite(r).all()) or not bool((r > 0).all()):
        raise ConfigError(f"data_range must be finite and > 0, got {data_range!r}; pass the intensity span, e.g. 1.0")
    return r


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over (C,H,W) of ``values`` (B,1,h,w), within ``mask`` if given, in float64 -> (B,).

    An empty mask gives NaN (0/0) without a warning or an exception.
    """
    if mask is None:
        return values.sum(dim=(1, 2, 3), dtype=torch.float64) / values[0].numel()
    total = (values * mask).sum(dim=(1, 2, 3), dtype=torch.float64)
    count = mask.sum(dim=(1, 2, 3), dtype=torch.float64)
    return total / count


# --------------------------------------------------------------------------------------------
# error metrics
# --------------------------------------------------------------------------------------------


def _blockwise_mean(
    values: Callable[[Tensor, Tensor], Tensor], pred: Tensor, target: Tensor, mask: Tensor | None
) -> Tensor:
    """Per-image mean of ``values(pred, target)`` (B,1,H,W) within ``mask``, block by block -> (B,).

    Blocks of a few images keep the temporaries in cache; over the whole batch the same reductions
    were 5x slower on the project's CPU (0.9 s vs 0.17 s for a masked MSE of 256 slices of 256^2).
    """
    step = _block_size(pred)
    parts = [
        _masked_mean(values(pred[i : i + step], target[i : i + step]), None if mask is None else mask[i : i + step])
        for i in range(0, pred.shape[0], step)
    ]
    return torch.cat(parts)


def mse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error per image, (B,) float64, in squared intensity units (within ``mask``)."""
    pred, target = _check_pair(pred, target, mask)
    return _blockwise_mean(lambda p, t: (p - t).square(), pred, target, mask)


def psnr(pred: Tensor, target: Tensor, *, data_range: float | Tensor, mask: Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio in dB per image: ``10 log10(data_range^2 / MSE)``.

    Args:
        pred, target: (B, 1, H, W) float images (the formula is symmetric in them).
        data_range: intensity span, a float or a (B,) tensor (1.0 for [0, 1] images).
        mask: optional bool (B, 1, H, W); the MSE is averaged over the mask's voxels only.

    Returns:
        (B,) float64 in dB; +inf for identical images, NaN for an empty mask. Unmasked, this equals
        ``skimage.metrics.peak_signal_noise_ratio(target, pred, data_range=data_range)``.
    """
    err = mse(pred, target, mask)
    rng = _range_tensor(data_range, err.shape[0], err.device)
    return 10.0 * torch.log10(rng * rng / err)


def mae(pred: Tensor, target: Tensor, *, data_range: float | Tensor = 1.0, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error per image, in units of ``data_range``: ``mean |pred - target| / data_range``.

    With the default ``data_range=1.0`` this is the plain MAE in intensity units. Dividing by the
    range makes errors comparable across intensity scales (Reg-GAN's MAE on [-1, 1] images divided
    by 2 is ``mae(..., data_range=2.0)``). Returns (B,) float64; NaN for an empty mask.
    """
    pred, target = _check_pair(pred, target, mask)
    err = _blockwise_mean(lambda p, t: (p - t).abs(), pred, target, mask)
    return err / _range_tensor(data_range, err.shape[0], err.device)


def nmse(pred: Tensor, target: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Normalised mean squared error per image: ``||pred - target||^2 / ||target||^2``.

    Sums run over the mask's voxels when ``mask`` is given. The ratio does not depend on the
    intensity scale, so it takes no ``data_range``. Returns (B,) float64 (dimensionless); NaN for an
    empty mask, inf when the target is zero everywhere in the mask but the prediction is not.
    """
    pred, target = _check_pair(pred, target, mask)
    num = _blockwise_mean(lambda p, t: (p - t).square(), pred, target, mask)
    den = _blockwise_mean(lambda p, t: t.square(), pred, target, mask)
    return num / den


# --------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------


def _window_taps(window: Window) -> list[float]:
    """1-D weights of the separable SSIM window (they sum to 1), computed in float64."""
    if window == "gaussian":
        radius = int(_GAUSS_TRUNCATE * _GAUSS_SIGMA + 0.5)  # = 5, as scipy.ndimage computes it
        weights = [math.exp(-0.5 * (k / _GAUSS_SIGMA) ** 2) for k in range(-radius, radius + 1)]
        total = math.fsum(weights)
        return [w / total for w in weights]
    if window == "uniform":
        return [1.0 / _UNIFORM_SIZE] * _UNIFORM_SIZE
    raise ConfigError(f"unknown SSIM window {window!r}; use 'gaussian' or 'uniform'")


def ssim_pad(window: Window = "gaussian") -> int:
    """Border width (pixels) that SSIM drops on each side: ``(win_size - 1) // 2`` (5 or 3)."""
    return (len(_window_taps(window)) - 1) // 2


def _filter_valid(stack: Tensor, taps: list[float]) -> Tensor:
    """Separable correlation of (N, C, H, W) with ``taps`` along W then H, 'valid' output.

    Output shape (N, C, H - k + 1, W - k + 1) for k taps: exactly the pixels whose window lies
    inside the image. scikit-image filters with reflected borders and then crops (k - 1) // 2 pixels
    on each side, which removes every border-affected pixel, so the two agree.

    Why shift-and-add: measured on the project's 2-core CPU (256 slices of 256x256, 5 moment maps),
    the depthwise ``F.conv2d`` (groups=5, 1x11 then 11x1) took 1.1-1.9 s, the full 11x11 grouped
    conv 1.8 s, FFT filtering 2.0 s, one-channel conv over a (5B, 1, H, W) stack 8.8 s, while 11
    fused ``add_(slice, alpha=w)`` passes per axis over cache-sized blocks took 0.23 s for the
    whole SSIM (scikit-image: 1.2 s). It also works unchanged on CUDA and under autograd.
    """
    k = len(taps)
    h_out = stack.shape[-2] - k + 1
    w_out = stack.shape[-1] - k + 1
    # In-place accumulation is autograd-safe here: no backward needs the overwritten values.
    rows = stack[..., :, 0:w_out] * taps[0]
    for i in range(1, k):
        rows.add_(stack[..., :, i : i + w_out], alpha=taps[i])
    out = rows[..., 0:h_out, :] * taps[0]
    for i in range(1, k):
        out.add_(rows[..., i : i + h_out, :], alpha=taps[i])
    return out


def _ssim_block(x: Tensor, y: Tensor, rng: Tensor, window: Window) -> Tensor:
    """SSIM map over the valid region for a block: x, y (n,1,H,W), rng (n,) -> (n,1,h,w)."""
    taps = _window_taps(window)
    n_win = len(taps) ** 2
    # Population covariance for the Gaussian window (Wang et al. 2004; scikit-image with
    # use_sample_covariance=False), sample covariance for the uniform one (scikit-image default).
    cov_norm = 1.0 if window == "gaussian" else n_win / (n_win - 1)
    moments = _filter_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), taps)
    ux, uy, uxx, uyy, uxy = moments.unbind(dim=1)
    # Each product is formed once: every elementwise op is a pass over memory (and a parallel
    # region), so fewer ops is faster, especially on a CPU shared with other processes.
    ux2, uy2, uxuy = ux * ux, uy * uy, ux * uy
    r = rng.to(x.dtype).view(-1, 1, 1)
    c1 = (_K1 * r) ** 2
    c2 = (_K2 * r) ** 2
    # vx + vy = cov_norm (uxx + uyy - ux^2 - uy^2); vxy = cov_norm (uxy - ux uy)
    num = (2 * uxuy + c1) * (2 * cov_norm * (uxy - uxuy) + c2)
    den = (ux2 + uy2 + c1) * (cov_norm * (uxx + uyy - ux2 - uy2) + c2)
    return (num / den).unsqueeze(1)


def _block_size(images: Tensor) -> int:
    pixels = images.shape[-1] * images.shape[-2]
    budget = _CUDA_BLOCK_PIXELS if images.device.type == "cuda" else _CPU_BLOCK_PIXELS
    return max(1, budget // max(1, pixels))


def _check_window(pred: Tensor, window: Window) -> int:
    taps = _window_taps(window)
    size = len(taps)
    if pred.shape[-1] < size or pred.shape[-2] < size:
        raise DataError(
            f"images of {pred.shape[-2]}x{pred.shape[-1]} are smaller than the {size}x{size} {window} SSIM window; "
            "use larger images or window='uniform'"
        )
    return (size - 1) // 2


def ssim_map(
    pred: Tensor, target: Tensor, *, data_range: float | Tensor, window: Window = "gaussian"
) -> Tensor:
    """Local SSIM map over the valid region: (B, 1, H - 2p, W - 2p) with p = :func:`ssim_pad`.

    Pixel (i, j) of the map is the SSIM of the window centred on image pixel (i + p, j + p); the
    p-pixel border, whose windows would leave the image, is not computed (scikit-image computes it
    with reflected padding and then discards it). dtype: the promoted input dtype.
    """
    pred, target = _check_pair(pred, target, None)
    _check_window(pred, window)
    rng = _range_tensor(data_range, pred.shape[0], pred.device)
    step = _block_size(pred)
    parts = [
        _ssim_block(pred[i : i + step], target[i : i + step], rng[i : i + step], window)
        for i in range(0, pred.shape[0], step)
    ]
    return torch.cat(parts, dim=0)


def ssim(
    pred: Tensor,
    target: Tensor,
    *,
    data_range: float | Tensor,
    mask: Tensor | None = None,
    window: Window = "gaussian",
) -> Tensor:
    """Structural similarity per image (Wang et al. 2004), (B,) float64.

    Windows:
        - ``"gaussian"``: 11x11 Gaussian, sigma 1.5, population covariance; equals
          ``structural_similarity(t, p, data_range=r, gaussian_weights=True, sigma=1.5,
          use_sample_covariance=False)``.
        - ``"uniform"``: 7x7 box, sample covariance; equals scikit-image's defaults
          ``structural_similarity(t, p, data_range=r)``.
        K1 = 0.01, K2 = 0.03, C1 = (K1 r)^2, C2 = (K2 r)^2 with r = ``data_range``.

    Border: like scikit-image, the p = (win_size - 1) // 2 pixels at each border (5 for Gaussian,
    3 for uniform) are excluded from the average. Unmasked, the SSIM map is averaged over the
    remaining (H - 2p) x (W - 2p) pixels. Masked, SSIM is computed on the whole images (the
    windows see unmasked pixels too) and its map is averaged over ``mask`` intersected with that
    same valid region; a mask with no voxel inside the valid region gives NaN.
    """
    pred, target = _check_pair(pred, target, mask)
    pad = _check_window(pred, window)
    rng = _range_tensor(data_range, pred.shape[0], pred.device)
    step = _block_size(pred)
    h, w = pred.shape[-2:]
    values = []
    for i in range(0, pred.shape[0], step):  # blocks of images sized for the cache, see _filter_valid
        smap = _ssim_block(pred[i : i + step], target[i : i + step], rng[i : i + step], window)
        block_mask = None if mask is None else mask[i : i + step, :, pad : h - pad, pad : w - pad]
        values.append(_masked_mean(smap, block_mask))
    return torch.cat(values)


# --------------------------------------------------------------------------------------------
# aggregation
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# the registry of metrics
# --------------------------------------------------------------------------------------------

Better = Literal["higher", "lower"]


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """A metric a protocol can score.

    Attributes:
        name: its column in the results table (lower case letters, digits, underscores).
        better: "higher" or "lower": which way is better (tables bold the best, losses are signed by it).
        label: how tables and figures name it (units in parentheses, e.g. "PSNR (dB)").
        decimals: digits the tables print.
        data_range: whether it takes the protocol's per-image ``data_range`` (a (B,) float64 tensor).
        compute: ``compute(pred, target, *, mask, [data_range])`` -> (B,) float64 for a registered
            metric; ``None`` for the four built-ins, which the protocol computes by its own rules
            (SSIM window and space, PSNR cap).
    """

    name: str
    better: Better
    label: str
    decimals: int
    data_range: bool
    compute: Callable[..., Tensor] | None = None


_SPECS: dict[str, MetricSpec] = {
    "psnr": MetricSpec("psnr", "higher", "PSNR (dB)", 2, True),
    "ssim": MetricSpec("ssim", "higher", "SSIM", 4, True),
    "mae": MetricSpec("mae", "lower", "MAE", 4, True),
    "nmse": MetricSpec("nmse", "lower", "NMSE", 4, False),
}
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_RESERVED = {"model", "direction", "seed", "perturbation", "family", "severity", "subject", "slice", "protocol",
             "metric", "value", "trial"}


def register_metric(
    name: str, *, better: Better, label: str | None = None, decimals: int = 3, data_range: bool = False,
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Decorator: register ``fn(pred, target, *, mask=None[, data_range])`` as the metric ``name``.

    ``fn`` takes (B, 1, H, W) prediction and target in [0, 1] (as the protocol prepares them: mapped,
    normalised or cropped by its rule), ``mask`` a bool (B, 1, H, W) region or None, and with
    ``data_range=True`` a keyword ``data_range``, a (B,) float64 tensor. It returns (B,) values,
    one per image (NaN where undefined). A protocol that lists ``name`` in its ``metrics`` scores it,
    and the results table gets a column ``name``. Names already taken, or a column of the results
    table, are refused (ConfigError).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"metric name {name!r} must be lower case letters, digits and underscores, starting with a letter")
    if name in _SPECS or name in _RESERVED or name.startswith("stability_"):
        raise ConfigError(f"metric name {name!r} is taken (a metric or a column of the results table); choose another")
    if better not in ("higher", "lower"):
        raise ConfigError(f"metric {name!r}: better={better!r} must be 'higher' or 'lower'")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 8:
        raise ConfigError(f"metric {name!r}: decimals={decimals!r} must be an integer from 0 to 8")

    def decorate(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        if not callable(fn):
            raise ConfigError(f"metric {name!r}: register a function, not {type(fn).__name__}")
        _SPECS[name] = MetricSpec(name, better, label or name.upper(), decimals, bool(data_range), fn)
        return fn

    return decorate


def metric_spec(name: str) -> MetricSpec:
    """The registered metric ``name``; ConfigError naming the known ones otherwise (a plugin that
    registers it must be loaded first: :func:`robustmri.plugins.load_plugins`)."""
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown metric {name!r}; use one of {', '.join(_SPECS)} (or load the plugin that registers it)"
        ) from None


def list_metrics() -> tuple[str, ...]:
    """Every metric name: the built-ins in :data:`METRICS` order, then the registered ones in the
    order they were registered."""
    return tuple(_SPECS)


def compute_registered(name: str, pred: Tensor, target: Tensor, *, mask: Tensor | None,
                       data_range: Tensor | None = None) -> Tensor:
    """Call a registered (not built-in) metric and check what it returns: (B,) float64 on the
    inputs' device. A wrong shape is a one-line ConfigError naming the metric."""
    spec = metric_spec(name)
    if spec.compute is None:
        raise ConfigError(f"metric {name!r} is built in; the protocol computes it")
    kwargs: dict[str, Tensor | None] = {"mask": mask}
    if spec.data_range:
        kwargs["data_range"] = data_range
    value = spec.compute(pred, target, **kwargs)
    if not isinstance(value, Tensor) or tuple(value.shape) != (pred.shape[0],):
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ConfigError(f"metric {name!r} returned {shape} for {pred.shape[0]} images; "
                          "it must return one value per image, a (B,) tensor")
    return value.to(device=pred.device, dtype=torch.float64)


class _SpecField(Mapping[str, Any]):
    """A read-only view, metric name -> one field of its :class:`MetricSpec`, that follows the
    registry (a metric registered later is in it)."""

    def __init__(self, field: str) -> None:
        self._field = field

    def __getitem__(self, name: str) -> Any:
        return getattr(_SPECS[name], self._field)

    def __iter__(self) -> Iterator[str]:
        return iter(list(_SPECS))

    def __len__(self) -> int:
        return len(_SPECS)


BETTER: Mapping[str, Better] = _SpecField("better")
"""Metric name -> "higher" or "lower": which way is better."""
LABELS: Mapping[str, str] = _SpecField("label")
"""Metric name -> how tables and figures name it ("PSNR (dB)")."""
DECIMALS: Mapping[str, int] = _SpecField("decimals")
"""Metric name -> digits the tables print."""
