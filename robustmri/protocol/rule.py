"""The scoring rule: every choice that changes a reported PSNR/SSIM, recorded in one frozen object.

Published MRI-translation numbers are not comparable unless they were computed the same way: peers
differ in intensity mapping, per-image normalisation, masks, data range, SSIM window and how slices
are averaged. A :class:`Protocol` fixes all of these, has a short stable :attr:`Protocol.id`, and
scores batches with :meth:`Protocol.score`. Results tables carry the id in a ``protocol`` column;
:func:`concat_results` and :func:`check_same_protocol` refuse to mix protocols.

Scoring pipeline of :meth:`Protocol.score` (pred, target: (B, 1, H, W) in the protocol's I/O range;
:meth:`Protocol.score_unit` takes robustmri's [0, 1] model space and maps it there first):

1. region: the mask rule gives a bool (B, 1, H, W) region, or none (see :data:`MaskRule`).
2. map to [0, 1]: ``x -> (x - lo) / span`` ([-1, 1]: ``(x + 1) / 2``); clip to [0, 1] if ``clip``.
3. empty targets: an image whose mapped target has max <= 0 is flagged (see ``empty_target``).
4. for each metric: if masked in "zero" mode, both images are multiplied by the region; if the
   metric is in ``norm_metrics`` the image normalisation is applied (over the whole image); if
   the mask rule is "center_crop" and the metric is masked, both images are cropped.
5. data range (PSNR, SSIM, and a registered metric that asks for it) per image from the rule, on
   the images the metric sees; MAE is always in [0, 1] intensity units (data_range 1) and NMSE is
   scale-free.
6. the metric, with the region as its mask in "select" mode; SSIM in "io" space sees the images
   mapped back to the I/O range with the range scaled by the span (Reg-GAN); PSNR capped.
7. images with an empty target get NaN (or 0 with ``empty_target="zero"``); images whose
   data range is not finite and > 0 get NaN.

Aggregation (:func:`robustmri.results.aggregate_protocol`) uses NaN-skipping means at the
protocol's level. The named presets (peers' protocols) are in :mod:`robustmri.protocol.presets`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch
from torch import Tensor

from robustmri import metrics as _m
from robustmri.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["Protocol", "check_same_protocol", "concat_results", "tag_results"]

VolumeNorm = Literal["none", "minmax", "percentile", "mean", "zscore"]
"""Volume normalisation applied at data preparation (implemented in robustmri.data.normalize)."""
IORange = Literal["unit", "symmetric"]
"""Intensity range of the model's inputs and outputs: "unit" = [0, 1], "symmetric" = [-1, 1]."""
ImageNorm = Literal["none", "per_image_max", "per_image_mean"]
"""Scoring-time normalisation of each image (after mapping to [0, 1]):
"per_image_max": x / max(x) (ResViT, SynDiff); "per_image_mean": |x| / mean(|x|) over the whole
image (SelfRDB's mean_norm; in "zero" mask mode x is zeroed outside the mask first)."""
MaskRule = Literal["none", "brain", "threshold", "source_threshold", "foreground_neq_min", "center_crop"]
"""Where masked metrics are evaluated: "brain": the ``mask`` given to score(); "threshold":
mapped target > ``mask_threshold``; "source_threshold": mapped source > ``mask_threshold``;
"foreground_neq_min": target != the I/O range minimum, tested before mapping (Reg-GAN's
real != -1); "center_crop": a centred ``crop_size`` (H, W) crop (SynDiff's CenterCrop)."""
MaskMode = Literal["select", "zero"]
"""How a region masks a metric: "select" reduces over region voxels only (SSIM: map averaged in the
region); "zero" multiplies both images by the region and scores the whole image (SelfRDB)."""
DataRange = Literal["fixed", "target_max", "pred_max"]
"""PSNR/SSIM data range: a fixed value, or the per-image max of the target / prediction, taken over
the whole (cropped) image the metric sees."""
SSIMSpace = Literal["unit", "io"]
"""Intensity space SSIM is computed in: mapped [0, 1] images, or the model's I/O range (Reg-GAN
computes scikit-image SSIM on [-1, 1] images with data_range 2)."""
EmptyTarget = Literal["nan", "zero"]
"""Score of an image whose target is zero everywhere: NaN (skipped by nanmean) or 0 (ResViT's
validation loop skips such slices but still averages their zero-initialised entries)."""
Aggregation = Literal["subject", "slice"]

_IO_RANGES: dict[str, tuple[float, float]] = {"unit": (0.0, 1.0), "symmetric": (-1.0, 2.0)}  # (lo, span)
_ID_HASH_CHARS = 8


def _choice(field: str, value: Any, literal: Any) -> None:
    valid = get_args(literal)
    if value not in valid:
        raise ConfigError(f"protocol field {field}={value!r} is invalid; use one of {', '.join(map(str, valid))}")


def _metric_tuple(field: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(f"protocol field {field}={value!r} must be a list of metric names from {list(_m.list_metrics())}")
    names = list(value)
    if any(n not in _m.list_metrics() for n in names):
        from robustmri.plugins import load_plugins

        load_plugins()  # a plugin module may register it
    known = _m.list_metrics()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"protocol field {field} has unknown metric(s) {unknown}; use names from {list(known)} "
                          "(or load the plugin that registers them)")
    return tuple(n for n in known if n in names)  # canonical order (built-ins, then registered), no duplicates


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A complete, hashable description of how predictions are scored (see the module docstring).

    Fields left at ``None`` take their canonical value: ``masked_metrics`` / ``norm_metrics`` =
    all of ``metrics`` when a mask / image normalisation is used (else empty), ``data_range_value``
    = 1.0 for the "fixed" rule. A field that the other fields make irrelevant must stay at its
    default (e.g. ``mask_threshold`` without a threshold rule), so equal behaviour means equal id.
    ``reference`` (free text naming the source code reproduced) is not part of the id.
    """

    name: str
    volume_norm: VolumeNorm = "percentile"
    io_range: IORange = "unit"
    clip: bool = False
    image_norm: ImageNorm = "none"
    norm_metrics: tuple[str, ...] | None = None
    mask: MaskRule = "brain"
    mask_threshold: float | None = None
    crop_size: tuple[int, int] | None = None
    mask_mode: MaskMode = "select"
    masked_metrics: tuple[str, ...] | None = None
    data_range: DataRange = "fixed"
    data_range_value: float | None = None
    ssim_window: _m.Window = "gaussian"
    ssim_space: SSIMSpace = "unit"
    psnr_cap: float | None = None
    empty_target: EmptyTarget = "nan"
    metrics: tuple[str, ...] = _m.METRICS
    aggregation: Aggregation = "subject"
    reference: str = dataclasses.field(default="", compare=False)

    # ---------------------------------------------------------------- validation
    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        if not isinstance(self.name, str) or not self.name or any(c.isspace() for c in self.name):
            raise ConfigError(f"protocol name {self.name!r} must be a non-empty string without spaces")
        for field, literal in (
            ("volume_norm", VolumeNorm), ("io_range", IORange), ("image_norm", ImageNorm),
            ("mask", MaskRule), ("mask_mode", MaskMode), ("data_range", DataRange),
            ("ssim_window", _m.Window), ("ssim_space", SSIMSpace), ("empty_target", EmptyTarget),
            ("aggregation", Aggregation),
        ):
            _choice(field, getattr(self, field), literal)
        if not isinstance(self.clip, bool):
            raise ConfigError(f"protocol field clip={self.clip!r} must be true or false")
        metrics = _metric_tuple("metrics", self.metrics)
        if not metrics:
            raise ConfigError(f"protocol field metrics is empty; list at least one of {', '.join(_m.list_metrics())}")
        set_("metrics", metrics)

        def subset(field: str, used: bool, why: str) -> None:
            value = getattr(self, field)
            if not used:
                if value:
                    raise ConfigError(f"protocol field {field}={list(value)} has no effect {why}; remove it")
                set_(field, ())
                return
            chosen = metrics if value is None else _metric_tuple(field, value)
            extra = [n for n in chosen if n not in metrics]
            if extra:
                raise ConfigError(f"protocol field {field} names {extra}, which are not in metrics={list(metrics)}")
            set_(field, chosen)

        subset("norm_metrics", self.image_norm != "none", "with image_norm='none'")
        subset("masked_metrics", self.mask != "none", "with mask='none'")

        if self.mask in ("threshold", "source_threshold"):
            t = self.mask_threshold
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0.0 <= float(t) < 1.0):
                raise ConfigError(f"protocol field mask_threshold={t!r} must be a number in [0, 1) for mask={self.mask!r}")
            set_("mask_threshold", float(t))
        elif self.mask_threshold is not None:
            raise ConfigError(f"protocol field mask_threshold is only used by threshold masks, not mask={self.mask!r}; remove it")

        if self.mask == "center_crop":
            c = self.crop_size
            if (
                not isinstance(c, (tuple, list)) or len(c) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in c)
            ):
                raise ConfigError(f"protocol field crop_size={c!r} must be two positive integers (H, W) for mask='center_crop'")
            set_("crop_size", (int(c[0]), int(c[1])))
        elif self.crop_size is not None:
            raise ConfigError(f"protocol field crop_size is only used by mask='center_crop', not {self.mask!r}; remove it")

        if self.mask in ("none", "center_crop") and self.mask_mode != "select":
            raise ConfigError(f"protocol field mask_mode={self.mask_mode!r} has no effect with mask={self.mask!r}; remove it")

        if self.data_range == "fixed":
            v = 1.0 if self.data_range_value is None else self.data_range_value
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 < float(v) < float("inf")):
                raise ConfigError(f"protocol field data_range_value={v!r} must be a finite number > 0")
            set_("data_range_value", float(v))
        elif self.data_range_value is not None:
            raise ConfigError("protocol field data_range_value is only used by data_range='fixed'; remove it")

        if "ssim" not in metrics and (self.ssim_window != "gaussian" or self.ssim_space != "unit"):
            raise ConfigError("protocol fields ssim_window/ssim_space have no effect without 'ssim' in metrics; remove them")

        if self.psnr_cap is not None:
            cap = self.psnr_cap
            if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not (0.0 < float(cap) < float("inf")):
                raise ConfigError(f"protocol field psnr_cap={cap!r} must be a finite number of dB > 0, or null")
            set_("psnr_cap", float(cap))
        if not isinstance(self.reference, str):
            raise ConfigError("protocol field reference must be a string")

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict of every field (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Protocol:
        """Build a protocol from :meth:`to_dict` output (or a YAML/JSON mapping); validates it."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a protocol must be a mapping of field names to values, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown protocol field(s) {unknown}; valid fields: {', '.join(sorted(known))}")
        if "name" not in data:
            raise ConfigError("a protocol needs a 'name' field")
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        return cls(**values)

    @property
    def id(self) -> str:
        """Short stable id: ``<name>-<8 hex chars>``, a SHA-256 of every field except ``reference``.

        Equal fields give the same id in every Python session and version; any change to a field
        that affects scoring changes it.
        """
        fields = self.to_dict()
        fields.pop("reference")
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return f"{self.name}-{hashlib.sha256(blob.encode('utf-8')).hexdigest()[:_ID_HASH_CHARS]}"

    # ---------------------------------------------------------------- scoring
    def score(
        self, pred: Tensor, target: Tensor, mask: Tensor | None = None, source: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Score a batch under this protocol.

        Args:
            pred, target: (B, 1, H, W) float tensors in the model's I/O range (``io_range``).
            mask: bool (B, 1, H, W) brain mask; required by the "brain" rule, ignored otherwise.
            source: (B, 1, H, W) model input in the I/O range; required by "source_threshold".

        Returns:
            ``{metric: (B,) float64 tensor}`` for each name in ``metrics``, on the inputs' device.
        """
        pred, target = _m._check_pair(pred, target, None)
        lo, span = _IO_RANGES[self.io_range]
        region = self._region(pred, target, mask, source, lo, span)

        def to_unit(x: Tensor) -> Tensor:
            x = x if self.io_range == "unit" else (x - lo) / span
            return x.clamp(0.0, 1.0) if self.clip else x

        pred_u, target_u = to_unit(pred), to_unit(target)
        empty = target_u.amax(dim=(1, 2, 3)) <= 0
        prepared: dict[tuple[bool, bool, bool], tuple[Tensor, Tensor]] = {}

        def images(zero: bool, norm: bool, crop: bool) -> tuple[Tensor, Tensor]:
            key = (zero, norm, crop)
            if key not in prepared:
                p, t = pred_u, target_u
                if zero:
                    p, t = p * region, t * region
                if norm:
                    p, t = self._normalise(p), self._normalise(t)
                if crop:
                    p, t = self._crop(p), self._crop(t)
                prepared[key] = (p, t)
            return prepared[key]

        out: dict[str, Tensor] = {}
        for name in self.metrics:
            masked = name in self.masked_metrics
            crop = masked and self.mask == "center_crop"
            zero = masked and region is not None and self.mask_mode == "zero"
            select = region if (masked and region is not None and self.mask_mode == "select") else None
            p, t = images(zero, name in self.norm_metrics, crop)
            spec = _m.metric_spec(name)
            if spec.compute is not None:  # a registered metric: the protocol's images, region and range
                if spec.data_range:  # as for PSNR/SSIM: an invalid range is replaced, its image scores NaN
                    rng = self._range(p, t)
                    bad = ~(torch.isfinite(rng) & (rng > 0))
                    value = _m.compute_registered(name, p, t, mask=select, data_range=torch.where(bad, torch.ones_like(rng), rng))
                    value = torch.where(bad, torch.full_like(value, float("nan")), value)
                else:
                    value = _m.compute_registered(name, p, t, mask=select)
            elif name == "mae":
                value = _m.mae(p, t, data_range=1.0, mask=select)
            elif name == "nmse":
                value = _m.nmse(p, t, mask=select)
            else:
                rng = self._range(p, t)
                bad = ~(torch.isfinite(rng) & (rng > 0))
                safe = torch.where(bad, torch.ones_like(rng), rng)
                if name == "psnr":
                    value = _m.psnr(p, t, data_range=safe, mask=select)
                    if self.psnr_cap is not None:
                        value = value.clamp(max=self.psnr_cap)
                else:
                    if self.ssim_space == "io":
                        p, t, safe = p * span + lo, t * span + lo, safe * span
                    value = _m.ssim(p, t, data_range=safe, mask=select, window=self.ssim_window)
                value = torch.where(bad, torch.full_like(value, float("nan")), value)
            fill = float("nan") if self.empty_target == "nan" else 0.0
            out[name] = torch.where(empty, torch.full_like(value, fill), value)
        return out

    def to_io(self, x: Tensor) -> Tensor:
        """Map intensities from robustmri's model space [0, 1] into this protocol's I/O range
        (``x * 2 - 1`` for "symmetric"; unchanged for "unit")."""
        lo, span = _IO_RANGES[self.io_range]
        return x if self.io_range == "unit" else x * span + lo

    def score_unit(
        self, pred: Tensor, target: Tensor, mask: Tensor | None = None, source: Tensor | None = None
    ) -> dict[str, Tensor]:
        """:meth:`score` for tensors in robustmri's model space [0, 1] (every model's output and
        every prepared slice): prediction, target and source are first mapped into the protocol's
        I/O range (:meth:`to_io`), so a preset that scores [-1, 1] images sees [-1, 1] images.
        This is how the bench and ``robustmri eval`` score; call :meth:`score` directly only with
        images already in the I/O range."""
        return self.score(self.to_io(pred), self.to_io(target), mask=mask, source=None if source is None else self.to_io(source))

    def _region(
        self, pred: Tensor, target: Tensor, mask: Tensor | None, source: Tensor | None, lo: float, span: float
    ) -> Tensor | None:
        """Bool (B, 1, H, W) region of the mask rule, or None for "none" and "center_crop"."""
        rule = self.mask
        if rule in ("none", "center_crop"):
            if rule == "center_crop":
                ch, cw = self.crop_size  # type: ignore[misc]
                if ch > pred.shape[-2] or cw > pred.shape[-1]:
                    raise DataError(
                        f"protocol {self.name!r} crops {ch}x{cw} but the images are {pred.shape[-2]}x{pred.shape[-1]}; "
                        "pass images at least as large as crop_size"
                    )
            return None
        if rule == "brain":
            if mask is None:
                raise DataError(f"protocol {self.name!r} scores within a brain mask: pass mask=<bool (B,1,H,W) tensor>")
            _m._check_pair(pred, target, mask)
            return mask
        if rule == "foreground_neq_min":
            return target != lo
        if rule == "threshold":
            ref = target
        else:  # source_threshold
            if source is None:
                raise DataError(f"protocol {self.name!r} thresholds the source image: pass source=<(B,1,H,W) tensor>")
            ref, _ = _m._check_pair(source, target, None)
        ref = ref if self.io_range == "unit" else (ref - lo) / span
        if self.clip:
            ref = ref.clamp(0.0, 1.0)
        return ref > self.mask_threshold

    def _normalise(self, x: Tensor) -> Tensor:
        if self.image_norm == "per_image_max":
            return x / x.amax(dim=(1, 2, 3), keepdim=True)
        mag = x.abs()  # per_image_mean (SelfRDB mean_norm)
        return mag / mag.mean(dim=(1, 2, 3), keepdim=True)

    def _crop(self, x: Tensor) -> Tensor:
        """Centred crop to ``crop_size`` with torchvision's CenterCrop offsets (round((H - h) / 2))."""
        ch, cw = self.crop_size  # type: ignore[misc]
        top = int(round((x.shape[-2] - ch) / 2.0))
        left = int(round((x.shape[-1] - cw) / 2.0))
        return x[..., top : top + ch, left : left + cw]

    def _range(self, pred: Tensor, target: Tensor) -> Tensor:
        """Per-image data range (B,) float64 in [0, 1] units, from the data_range rule."""
        if self.data_range == "fixed":
            return torch.full((pred.shape[0],), float(self.data_range_value), dtype=torch.float64, device=pred.device)  # type: ignore[arg-type]
        ref = target if self.data_range == "target_max" else pred
        return ref.detach().amax(dim=(1, 2, 3)).to(torch.float64)

    # ---------------------------------------------------------------- results tables
    def results_frame(
        self, scores: Mapping[str, Any], subject: Sequence[Any] | Tensor, slice_index: Sequence[int] | Tensor
    ) -> pd.DataFrame:
        """Per-slice results table: columns subject, slice, one per metric, protocol (= :attr:`id`).
        ``scores``: metric -> (B,) values, tensors (read back together, in one transfer) or arrays."""
        import pandas as pd

        def column(v: Sequence[Any] | Tensor) -> list[Any]:
            return v.detach().cpu().tolist() if isinstance(v, Tensor) else list(v)

        frame = pd.DataFrame({"subject": column(subject), "slice": column(slice_index)})
        host = to_host({name: scores[name] for name in self.metrics})
        for name in self.metrics:
            values = host[name]
            if len(values) != len(frame):
                raise DataError(f"{len(values)} {name} values for {len(frame)} slices; pass one subject and slice per image")
            frame[name] = values
        return tag_results(frame, self)


# -------------------------------------------------------------------- results tagging


def to_host(values: Mapping[str, Any]) -> dict[str, Any]:
    """name -> (B,) values as float64 numpy arrays, the tensors among them read back from their
    device in one transfer (stacked), not one per name: a batch's scores cost the host one wait."""
    import numpy as np

    tensors = {k: v for k, v in values.items() if isinstance(v, Tensor)}
    out = {k: np.asarray(v, dtype=np.float64) for k, v in values.items() if k not in tensors}
    if tensors:
        lengths = {t.reshape(-1).shape[0] for t in tensors.values()}
        if len(lengths) == 1:
            stacked = torch.stack([t.detach().reshape(-1).to(torch.float64) for t in tensors.values()]).cpu().numpy()
            out.update(zip(tensors, stacked, strict=True))
        else:  # ragged: the caller's length check names the problem
            out.update({k: t.detach().reshape(-1).to(torch.float64).cpu().numpy() for k, t in tensors.items()})
    return {k: out[k] for k in values}


def tag_results(frame: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """Return a copy of ``frame`` with a ``protocol`` column holding ``protocol.id``.

    A frame already tagged with a different id raises :class:`ConfigError`.
    """
    if "protocol" in frame.columns and len(frame):
        found = check_same_protocol(frame)
        if found != protocol.id:
            raise ConfigError(f"results already tagged with protocol {found!r}; cannot re-tag them as {protocol.id!r}")
    out = frame.copy()
    out["protocol"] = protocol.id
    return out


def check_same_protocol(frame: pd.DataFrame) -> str:
    """Return the single protocol id of a results table; ConfigError if absent or mixed."""
    if "protocol" not in frame.columns:
        raise ConfigError("results table has no 'protocol' column; tag it with robustmri.protocol.tag_results(frame, protocol)")
    ids = list(dict.fromkeys(frame["protocol"].tolist()))
    if len(ids) != 1:
        if not ids:
            raise ConfigError("results table is empty; it has no protocol id to check")
        more = f" (and {len(ids) - 2} more)" if len(ids) > 2 else ""
        raise ConfigError(
            f"results mix protocols {ids[0]!r} and {ids[1]!r}{more}; re-score them under one protocol before combining"
        )
    return str(ids[0])


def concat_results(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate tagged results tables, refusing tables scored under different protocols."""
    import pandas as pd

    frames = list(frames)
    if not frames:
        raise ConfigError("concat_results got no tables; pass at least one tagged results table")
    for f in frames:
        check_same_protocol(f)
    out = pd.concat(frames, ignore_index=True)
    check_same_protocol(out)
    return out
