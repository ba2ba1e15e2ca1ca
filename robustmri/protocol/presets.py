"""Named scoring protocols: the project's default and the peers' (ResViT, SynDiff, Reg-GAN,
SelfRDB), each reproducing the scoring code it names in ``reference``; and the registry that a
suite's ``[protocol] name`` and ``--protocol`` look names up in (:func:`get_protocol`).

A new preset is a :class:`~robustmri.protocol.rule.Protocol` registered with
:func:`register_protocol` (docs/architecture.md, "Add a protocol preset").
"""

from __future__ import annotations

from robustmri.errors import ConfigError
from robustmri.protocol.rule import Protocol

__all__ = ["PRESETS", "get_protocol", "list_protocols", "register_protocol"]


def _robustmri() -> Protocol:
    """The project's default protocol (a design choice, not a peer's).

    Percentile volume normalisation at data preparation (robust to bright outliers and lesions);
    models in [0, 1]; no clipping (out-of-range outputs are errors and are scored as such); no
    per-image renormalisation (it would hide global intensity errors, the typical failure under
    perturbations); every metric within the brain mask ("select" mode: background voxels do not
    inflate scores); fixed data range 1; Gaussian 11x11 SSIM (Wang et al. 2004); per-subject
    aggregation, so subjects with more slices do not weigh more.
    """
    return Protocol(
        name="robustmri",
        volume_norm="percentile",
        io_range="unit",
        image_norm="none",
        mask="brain",
        mask_mode="select",
        data_range="fixed",
        data_range_value=1.0,
        ssim_window="gaussian",
        metrics=("psnr", "ssim", "mae", "nmse"),
        aggregation="subject",
        reference="robustmri design: docs/protocol.md",
    )


def _resvit() -> Protocol:
    """ResViT's validation loop (icon-lab/ResViT, train.py, ``__main__`` validation step).

    fake/real ``*0.5+0.5`` from [-1, 1]; ``L1 = abs(fake-real).mean()`` on those images (no
    normalisation); ``psnr(fake/fake.max(), real/real.max())`` with skimage's old ``compare_psnr``
    and no data_range, i.e. 1 for non-negative float images; slices with ``real.max() <= 0`` are
    skipped but their zero entries stay in ``np.mean`` (empty_target="zero"); mean over slices. No
    SSIM in code. Volume normalisation: IXI volumes mean-normalised (data shared with SynDiff).
    """
    return Protocol(
        name="resvit",
        volume_norm="mean",
        io_range="symmetric",
        image_norm="per_image_max",
        norm_metrics=("psnr",),
        mask="none",
        data_range="fixed",
        data_range_value=1.0,
        empty_target="zero",
        metrics=("psnr", "mae"),
        aggregation="slice",
        reference="icon-lab/ResViT train.py (validation step in __main__)",
    )


def _syndiff() -> Protocol:
    """SynDiff's test script (icon-lab/SynDiff, test.py: ``psnr()`` and the ``__main__`` loops).

    ``to_range_0_1`` then ``x / x.max()`` on the whole 256x256 image; ``CenterCrop((256, 152))``;
    ``psnr = 20 log10(fake.max() / sqrt(mean((fake - real)^2)))`` over the crop (data range =
    prediction max within the crop); ``np.nanmean`` over slices. No SSIM in code. Volume
    normalisation: IXI volumes to mean 1 then scaled by the cross-subject max (maintainers).
    """
    return Protocol(
        name="syndiff",
        volume_norm="mean",
        io_range="symmetric",
        image_norm="per_image_max",
        norm_metrics=("psnr",),
        mask="center_crop",
        crop_size=(256, 152),
        masked_metrics=("psnr",),
        data_range="pred_max",
        metrics=("psnr",),
        aggregation="slice",
        reference="icon-lab/SynDiff test.py (psnr, __main__)",
    )


def _reggan() -> Protocol:
    """Reg-GAN's test (Kid-Liet/Reg-GAN, trainer/CycTrainer.py: ``Cyc_Trainer.test``, ``Cyc_Trainer.PSNR``, ``Cyc_Trainer.MAE``).

    Data .npy in [-1, 1] (README). ``PSNR``: voxels where ``real != -1``, images mapped to [0, 1],
    PIXEL_MAX 1, 100 dB when MSE < 1e-10 (psnr_cap 100). ``MAE``: same voxels, ``|fake - real| / 2``.
    SSIM: ``measure.compare_ssim(fake_B, real_B)`` on the unmasked [-1, 1] images with the old
    scikit-image defaults (7x7 uniform window, sample covariance, data_range from the float dtype
    = 2). Plain mean over slices (NaN-skipping here).
    """
    return Protocol(
        name="reggan",
        volume_norm="minmax",
        io_range="symmetric",
        image_norm="none",
        mask="foreground_neq_min",
        mask_mode="select",
        masked_metrics=("mae", "psnr"),
        data_range="fixed",
        data_range_value=1.0,
        ssim_window="uniform",
        ssim_space="io",
        psnr_cap=100.0,
        metrics=("psnr", "ssim", "mae"),
        aggregation="slice",
        reference="Kid-Liet/Reg-GAN trainer/CycTrainer.py (Cyc_Trainer.test, PSNR, MAE)",
    )


def _selfrdb() -> Protocol:
    """SelfRDB's evaluation (icon-lab/SelfRDB, utils.py ``compute_metrics``, ``mean_norm``,
    ``apply_mask_and_norm``; main.py ``on_test_end``; data/create_brats_dataset.py).

    Slices min-max scaled to [0, 1] at preparation, fed in [-1, 1]; at scoring
    ``((x + 1) / 2).clip(0, 1)`` (the code does this when ``nanmin < -0.1``; here always);
    ``x * mask`` with the brain mask (T1 slice > 0.1 after min-max: pass it as ``mask``), then
    ``|x| / mean(|x|)`` per slice; skimage PSNR and SSIM (default 7x7 uniform window) on the whole
    zero-masked slice with ``data_range = gt.max()``; nanmean per subject, then nanmean and
    nanstd (ddof 0) over subjects. SelfRDB prints SSIM x 100; values here are fractions.
    """
    return Protocol(
        name="selfrdb",
        volume_norm="minmax",
        io_range="symmetric",
        clip=True,
        image_norm="per_image_mean",
        norm_metrics=("psnr", "ssim"),
        mask="brain",
        mask_mode="zero",
        masked_metrics=("psnr", "ssim"),
        data_range="target_max",
        ssim_window="uniform",
        metrics=("psnr", "ssim"),
        aggregation="subject",
        reference="icon-lab/SelfRDB utils.py (compute_metrics, mean_norm, apply_mask_and_norm)",
    )


PRESETS: dict[str, Protocol] = {p.name: p for p in (_robustmri(), _resvit(), _syndiff(), _reggan(), _selfrdb())}
"""Named protocols; ``robustmri`` is the project's default."""


def register_protocol(protocol: Protocol, replace: bool = False) -> Protocol:
    """Make ``protocol`` a named preset (a suite's ``[protocol] name``, ``--protocol``); returns it.
    A name already taken is refused unless ``replace``: a preset's scores must not change under
    the same name."""
    if not isinstance(protocol, Protocol):
        raise ConfigError(f"register_protocol takes a Protocol, got {type(protocol).__name__}")
    if protocol.name in PRESETS and not replace and PRESETS[protocol.name] != protocol:
        raise ConfigError(f"protocol {protocol.name!r} is already a preset ({PRESETS[protocol.name].id}): choose another "
                          "name, or pass replace=True")
    PRESETS[protocol.name] = protocol
    return protocol


def list_protocols() -> list[str]:
    """Names of the preset protocols (the plugins' included), sorted."""
    from robustmri.plugins import load_plugins

    load_plugins()
    return sorted(PRESETS)


def get_protocol(name: str | Protocol) -> Protocol:
    """Look up a preset by name (or by its full id); a :class:`Protocol` is returned unchanged."""
    if isinstance(name, Protocol):
        return name
    if name not in PRESETS:
        from robustmri.plugins import load_plugins

        load_plugins()  # a plugin module may register it
    if name in PRESETS:
        return PRESETS[name]
    for proto in PRESETS.values():
        if proto.id == name:
            return proto
    raise ConfigError(f"unknown protocol {name!r}; valid protocols: {', '.join(list_protocols())}")
