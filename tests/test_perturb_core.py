"""Contracts every corruption must meet: registry, shapes/dtypes/devices, seeding, identity at
severity 0, monotone degradation, data_range handling, the whole field of view, physical units,
user errors."""

from __future__ import annotations

import pytest
import torch

from robustmri.errors import ConfigError, DataError
from robustmri.perturb import (
    PERTURBATIONS,
    apply_perturbation,
    corruption_grid,
    derive_seed,
    get_perturbation,
    list_perturbations,
)
from robustmri.perturb.calibration import masked_psnr, replace_between_markers

CORRUPTIONS = list_perturbations(include_adversarial=False)
SP = 210.0 / 64  # mm per pixel of the embedded data at 64 x 64
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    from robustmri.data.embedded import embedded_slices

    d = embedded_slices(n_subjects=2, size=64, n_slices=4, seed=0, contrasts=("t1",))
    return d["t1"], d["mask"]


def test_registry_lists_every_family() -> None:
    assert set(CORRUPTIONS) == {
        "gaussian_noise", "rician_noise", "gaussian_blur", "bias_field", "gamma", "resolution",
        "motion", "ghosting", "spike", "undersampling", "misregistration",
    }
    adv = list_perturbations("adversarial")
    assert {"fgsm_linf", "pgd_linf", "pgd_l2", "square_linf"} <= set(adv)
    assert all(PERTURBATIONS[n].needs_model for n in adv if n != "random_linf")
    assert not PERTURBATIONS["random_linf"].needs_model  # the control: no model
    for name in PERTURBATIONS:
        assert sorted(PERTURBATIONS[name].severities) == [1, 2, 3, 4, 5]


def test_unknown_name_and_bad_severity_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown perturbation 'nois'"):
        get_perturbation("nois")
    p = get_perturbation("gaussian_noise")
    x = torch.rand(1, 1, 8, 8)
    for bad in (6, -1, 2.5):
        with pytest.raises(ConfigError, match="severity"):
            p(x, bad)
    with pytest.raises(ConfigError, match="data_range"):
        p(x, 1, data_range=(1.0, 0.0))


def test_bad_images_are_data_errors() -> None:
    p = get_perturbation("gaussian_blur")
    with pytest.raises(DataError, match=r"\(B, 1, H, W\)"):
        p(torch.rand(8, 8), 1)
    with pytest.raises(DataError, match="dtype"):
        p(torch.ones(1, 1, 8, 8, dtype=torch.int64), 1)
    with pytest.raises(DataError, match="mask"):
        p(torch.rand(1, 1, 8, 8), 1, mask=torch.ones(1, 1, 4, 4, dtype=torch.bool))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_shape_dtype_device_and_severity0_identity(name: str, device: str, batch) -> None:
    x = batch[0][:3].to(device)
    p = get_perturbation(name)
    for dtype in (torch.float32, torch.float64):
        xd = x.to(dtype)
        y = p(xd, 3, generator=1, spacing_mm=SP)
        assert y.shape == xd.shape and y.dtype == dtype and y.device == xd.device
        assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    y0 = p(x, 0, generator=1, spacing_mm=SP)
    assert torch.equal(y0, x) and y0 is not x


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_seed_determinism(name: str, batch) -> None:
    x = batch[0][:4]
    p = get_perturbation(name)
    a = p(x, 3, generator=torch.Generator().manual_seed(5), spacing_mm=SP)
    b = p(x, 3, generator=5, spacing_mm=SP)
    assert torch.equal(a, b)
    c = p(x, 3, generator=6, spacing_mm=SP)
    if p.stochastic:
        assert not torch.equal(a, c)
        # different draws per image: the same image repeated in a batch is corrupted differently
        twin = p(torch.cat([x[:1], x[:1]]), 3, generator=5, spacing_mm=SP)
        assert not torch.equal(twin[0], twin[1])
    else:
        assert torch.equal(a, c)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_degradation_monotone_in_severity(name: str, batch) -> None:
    x, mask = batch
    psnr = [float(masked_psnr(x, apply_perturbation(x, name, s, seed=0, mask=mask, spacing_mm=SP), mask).mean())
            for s in range(1, 6)]
    # A length below the pixel spacing cannot show (a 2.1 mm voxel at 3.3 mm pixels): those
    # severities leave the image as it is (PSNR inf); every visible one degrades it further.
    visible = [v for v in psnr if v != float("inf")]
    assert psnr[: len(psnr) - len(visible)] == [float("inf")] * (len(psnr) - len(visible)), psnr
    assert len(visible) >= 3 and all(b < a for a, b in zip(visible, visible[1:])), psnr
    assert visible[0] > 28 and psnr[-1] < 24, psnr  # a useful span even at 64 px


def test_data_range_is_respected_not_blindly_zero_one(batch) -> None:
    x = batch[0][:2]
    xs = x * 2.0 - 1.0  # the same images in [-1, 1]
    for name in ("gaussian_noise", "ghosting", "gamma"):
        y01 = apply_perturbation(x, name, 4, seed=3)
        ypm = apply_perturbation(xs, name, 4, seed=3, data_range=(-1.0, 1.0))
        assert ypm.min() >= -1 and ypm.max() <= 1 and ypm.min() < -0.9
        torch.testing.assert_close(ypm, y01 * 2.0 - 1.0, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_acts_on_the_whole_field_of_view(name: str, batch) -> None:
    """The scanner corrupts the background too: a mask only sets the SNR reference, never confines."""
    x, mask = batch[0][:2], batch[1][:2]
    y = apply_perturbation(x, name, 3, seed=0, mask=mask, spacing_mm=SP)
    outside = ~mask
    changed = (y != x) & outside
    assert changed.sum() > 0.05 * outside.sum(), f"{name} changed {int(changed.sum())} of {int(outside.sum())} background pixels"


def test_noise_severity_is_an_snr_of_the_brain_signal(batch) -> None:
    x, mask = batch[0][:2], batch[1][:2]
    for s, snr in ((2, 22.0), (4, 8.0)):
        d = apply_perturbation(x, "gaussian_noise", s, seed=1, mask=mask) - x
        inside = (x > 0.3) & (x < 0.7)  # away from the clamp
        expected = float((x[mask]).mean()) / snr  # both images have about the same brain mean
        assert abs(float(d[inside].std()) / expected - 1.0) < 0.08
    # brighter images get proportionally more noise: the SNR, not sigma, is the severity
    half = apply_perturbation(x * 0.5, "gaussian_noise", 3, seed=1, mask=mask) - x * 0.5
    full = apply_perturbation(x, "gaussian_noise", 3, seed=1, mask=mask) - x
    inside = (x > 0.3) & (x < 0.7)
    torch.testing.assert_close(half[inside] * 2.0, full[inside], atol=1e-5, rtol=1e-4)


def test_lengths_in_mm_need_the_pixel_spacing_and_scale_with_it(batch) -> None:
    x = batch[0][:2]
    for name in ("gaussian_blur", "resolution", "motion", "misregistration"):
        with pytest.raises(ConfigError, match="spacing_mm"):
            apply_perturbation(x, name, 2)
    with pytest.raises(DataError, match="spacing_mm"):
        apply_perturbation(x, "gaussian_blur", 2, spacing_mm=-1.0)
    with pytest.raises(DataError, match="one per image"):
        apply_perturbation(x, "gaussian_blur", 2, spacing_mm=torch.ones(5))
    from robustmri.perturb.image import FWHM_PER_SIGMA, band_limited_gaussian_blur

    # FWHM 5.7 mm at 3.28 mm pixels = sigma 0.738 px
    y = apply_perturbation(x, "gaussian_blur", 3, spacing_mm=SP)
    torch.testing.assert_close(y, band_limited_gaussian_blur(x, 5.7 / FWHM_PER_SIGMA / SP).clamp(0, 1))
    # one spacing per image: each image blurred at its own
    mixed = apply_perturbation(x, "gaussian_blur", 3, spacing_mm=torch.tensor([SP, SP / 2]))
    torch.testing.assert_close(mixed[1:], band_limited_gaussian_blur(x[1:], 5.7 / FWHM_PER_SIGMA / (SP / 2)).clamp(0, 1))
    torch.testing.assert_close(mixed[:1], y[:1])


def test_grid_cells_are_order_independent(batch) -> None:
    x = batch[0][:2]
    cells = {(c.name, c.severity): c.images for c in corruption_grid(x, severities=[0, 2], seed=7, spacing_mm=SP)}
    assert len(cells) == 2 * len(CORRUPTIONS)
    alone = apply_perturbation(x, "spike", 2, seed=7)
    assert torch.equal(cells[("spike", 2)], alone)
    assert torch.equal(cells[("motion", 0)], x)
    assert derive_seed(7, "spike") == derive_seed(7, "spike") != derive_seed(7, "motion")
    # common random numbers across severities: the same noise field, scaled
    n2 = apply_perturbation(x, "gaussian_noise", 2, seed=7) - x
    n4 = apply_perturbation(x, "gaussian_noise", 4, seed=7) - x
    inside = (x > 0.35) & (x < 0.65)  # > 4 sigma away from the clamp
    torch.testing.assert_close(n4[inside], n2[inside] * (22.0 / 8.0), atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="attack"):
        list(corruption_grid(x, names=["pgd_linf"]))


def test_replace_between_markers_is_idempotent() -> None:
    text = "# T\n\nintro\n"
    once = replace_between_markers(text, "| a |")
    twice = replace_between_markers(once, "| b |")
    assert once.count("BEGIN CALIBRATION") == 1 and "| a |" in once
    assert twice.count("BEGIN CALIBRATION") == 1 and "| b |" in twice and "| a |" not in twice
    assert twice.startswith("# T\n\nintro")


def test_calibration_scores_are_the_reported_scores() -> None:
    """Severities are calibrated in the metric the benchmark reports: calibration's PSNR and SSIM of
    a blurred image equal the bench's results for a model that outputs its (blurred) input against
    the clean image as target, slice by slice; and masked_psnr (the bisection's) equals that PSNR."""
    from torch import nn

    from robustmri.bench.scoring import EvalSettings, score_cell
    from robustmri.bench.plan import Cell
    from robustmri.data.paired import PairedTensors
    from robustmri.models.external import ExternalModel
    from robustmri.perturb.calibration import calibrate, calibration_scores
    from robustmri.perturb.grid import apply_perturbation
    from robustmri.protocol import get_protocol

    g = torch.Generator().manual_seed(3)
    size, n = 32, 5
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.4 * size) ** 2
    x = (torch.nn.functional.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 3, 1, 1) * disk).float()
    mask = disk[None, None].expand(n, 1, size, size).clone()
    spacing = 6.0
    data = PairedTensors(x, x, mask, torch.zeros(n, dtype=torch.long), torch.arange(n), None,
                         torch.full((n,), spacing, dtype=torch.float64))
    model = ExternalModel(nn.Identity(), "identity", image_size=size)
    settings = EvalSettings(get_protocol("robustmri"), seed=0, batch_size=8)
    bench = score_cell(model, data, Cell("gaussian_blur", "image", 3), settings).frame.sort_values("slice")
    blurred = apply_perturbation(x, "gaussian_blur", 3, seed=0, mask=mask, spacing_mm=spacing)
    mine = calibration_scores(x, blurred, mask)
    assert mine["psnr"].numpy() == pytest.approx(bench["psnr"].to_numpy(), abs=1e-6)
    assert mine["ssim"].numpy() == pytest.approx(bench["ssim"].to_numpy(), abs=1e-6)
    assert masked_psnr(x, blurred, mask).numpy() == pytest.approx(mine["psnr"].numpy(), abs=1e-4)  # float32 MSE
    row = next(r for r in calibrate(x, mask, names=["gaussian_blur"], spacing_mm=spacing) if r.severity == 3)
    assert row.ssim == pytest.approx(float(bench["ssim"].mean()), abs=1e-6)
    assert row.psnr == pytest.approx(float(bench["psnr"].mean()), abs=1e-6)
    import robustmri.perturb.calibration as C

    assert "skimage" not in open(C.__file__).read()  # one SSIM: the report's
