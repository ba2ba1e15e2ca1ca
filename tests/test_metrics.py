"""robustmri.metrics against scikit-image, numpy references computed by hand, and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from robustmri import metrics as M
from robustmri.results import aggregate
from robustmri.errors import ConfigError, DataError

SK_WINDOW = {
    "gaussian": {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False},
    "uniform": {},  # scikit-image defaults: 7x7 uniform window, sample covariance
}
PAD = {"gaussian": 5, "uniform": 3}


def _pair(kind: str, dtype: torch.dtype, shape=(5, 1, 37, 52), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, target) in [0, 1]: independent-ish noise ("random") or blurred fields ("smooth")."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        target = rng.random(shape)
        pred = np.clip(target + 0.3 * rng.standard_normal(shape), 0, 1)
    else:
        target = ndimage.gaussian_filter(rng.random(shape), sigma=(0, 0, 4, 4))
        target = (target - target.min()) / (target.max() - target.min())
        wobble = ndimage.gaussian_filter(rng.standard_normal(shape), (0, 0, 2, 2))
        pred = np.clip(0.8 * target + 0.1 + 0.1 * wobble / wobble.std(), 0, 1)
    return torch.from_numpy(pred).to(dtype), torch.from_numpy(target).to(dtype)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


# ---------------------------------------------------------------------------------- vs scikit-image


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["random", "smooth"])
@pytest.mark.parametrize("window", ["gaussian", "uniform"])
def test_ssim_matches_skimage(dtype, kind, window):
    pred, target = _pair(kind, dtype)
    ours = M.ssim(pred, target, data_range=1.0, window=window)
    ref = [sk_ssim(_np(target[i, 0]), _np(pred[i, 0]), data_range=1.0, **SK_WINDOW[window]) for i in range(len(pred))]
    assert ours.dtype == torch.float64 and ours.shape == (len(pred),)
    np.testing.assert_allclose(_np(ours), ref, rtol=0, atol=1e-5)
    assert np.ptp(ref) > 1e-3  # the images really differ from each other


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["random", "smooth"])
def test_psnr_matches_skimage(dtype, kind):
    pred, target = _pair(kind, dtype)
    ours = M.psnr(pred, target, data_range=1.0)
    ref = [sk_psnr(_np(target[i, 0]), _np(pred[i, 0]), data_range=1.0) for i in range(len(pred))]
    np.testing.assert_allclose(_np(ours), ref, rtol=0, atol=1e-4)


def test_per_image_data_range_matches_separate_calls():
    pred, target = _pair("smooth", torch.float64)
    ranges = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0], dtype=torch.float64)
    got_psnr = M.psnr(pred, target, data_range=ranges)
    got_ssim = M.ssim(pred, target, data_range=ranges, window="uniform")
    for i, r in enumerate(ranges.tolist()):
        assert got_psnr[i].item() == pytest.approx(sk_psnr(_np(target[i, 0]), _np(pred[i, 0]), data_range=r), abs=1e-9)
        assert got_ssim[i].item() == pytest.approx(sk_ssim(_np(target[i, 0]), _np(pred[i, 0]), data_range=r), abs=1e-9)


def test_ssim_map_equals_cropped_skimage_map():
    pred, target = _pair("smooth", torch.float64, shape=(2, 1, 30, 33))
    got = M.ssim_map(pred, target, data_range=1.0, window="gaussian")
    assert got.shape == (2, 1, 20, 23)
    _, full = sk_ssim(_np(target[1, 0]), _np(pred[1, 0]), data_range=1.0, full=True, **SK_WINDOW["gaussian"])
    np.testing.assert_allclose(_np(got[1, 0]), full[5:-5, 5:-5], atol=1e-12)


def test_blocking_does_not_change_results(monkeypatch):
    pred, target = _pair("random", torch.float64, shape=(7, 1, 24, 24))
    whole = M.ssim(pred, target, data_range=1.0)
    monkeypatch.setattr(M, "_CPU_BLOCK_PIXELS", 2 * 24 * 24)  # blocks of 2 images: 2+2+2+1
    assert M._block_size(pred) == 2
    np.testing.assert_allclose(_np(M.ssim(pred, target, data_range=1.0)), _np(whole), atol=1e-15)


# ---------------------------------------------------------------------------------- masked variants


def _mask(shape, seed=1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random(shape) < 0.4)


@pytest.mark.parametrize("window", ["gaussian", "uniform"])
def test_masked_ssim_is_full_map_mean_inside_mask_and_valid_region(window):
    pred, target = _pair("smooth", torch.float64)
    mask = _mask(pred.shape)
    got = M.ssim(pred, target, data_range=1.0, mask=mask, window=window)
    p = PAD[window]
    for i in range(len(pred)):
        _, smap = sk_ssim(_np(target[i, 0]), _np(pred[i, 0]), data_range=1.0, full=True, **SK_WINDOW[window])
        inner = np.zeros_like(smap, dtype=bool)
        inner[p:-p, p:-p] = True
        sel = inner & _np(mask[i, 0])
        assert got[i].item() == pytest.approx(smap[sel].mean(), abs=1e-10)


def test_masked_errors_match_numpy():
    pred, target = _pair("random", torch.float32)
    mask = _mask(pred.shape)
    p64, t64, m = _np(pred).astype(np.float64), _np(target).astype(np.float64), _np(mask)
    for i in range(len(pred)):
        d = (p64[i] - t64[i])[m[i]]
        mse = np.mean(d**2)
        assert M.psnr(pred, target, data_range=2.0, mask=mask)[i].item() == pytest.approx(10 * np.log10(4.0 / mse), abs=1e-4)
        assert M.mae(pred, target, mask=mask)[i].item() == pytest.approx(np.abs(d).mean(), rel=1e-6)
        assert M.mae(pred, target, data_range=2.0, mask=mask)[i].item() == pytest.approx(np.abs(d).mean() / 2, rel=1e-6)
        expected_nmse = np.sum(d**2) / np.sum(t64[i][m[i]] ** 2)
        assert M.nmse(pred, target, mask=mask)[i].item() == pytest.approx(expected_nmse, rel=1e-6)


def test_unmasked_mae_and_nmse_match_numpy():
    pred, target = _pair("smooth", torch.float64)
    p, t = _np(pred)[:, 0], _np(target)[:, 0]
    np.testing.assert_allclose(_np(M.mae(pred, target)), np.abs(p - t).mean(axis=(1, 2)), rtol=1e-12)
    nmse_ref = ((p - t) ** 2).sum(axis=(1, 2)) / (t**2).sum(axis=(1, 2))
    np.testing.assert_allclose(_np(M.nmse(pred, target)), nmse_ref, rtol=1e-12)


def test_closed_form_constant_offset():
    target = torch.zeros(2, 1, 16, 16, dtype=torch.float64) + 0.25
    pred = target + 0.1  # MSE = 0.01 -> PSNR = 20 dB with range 1
    assert M.psnr(pred, target, data_range=1.0).tolist() == pytest.approx([20.0, 20.0], abs=1e-9)
    assert M.mae(pred, target).tolist() == pytest.approx([0.1, 0.1], abs=1e-12)
    assert M.nmse(pred, target).tolist() == pytest.approx([0.01 / 0.0625] * 2, abs=1e-12)
    # Flat images: SSIM reduces to the luminance term (2 mx my + C1) / (mx^2 + my^2 + C1).
    c1 = (0.01) ** 2
    lum = (2 * 0.25 * 0.35 + c1) / (0.25**2 + 0.35**2 + c1)
    assert M.ssim(pred, target, data_range=1.0).tolist() == pytest.approx([lum, lum], abs=1e-9)


def test_identical_images_and_empty_masks():
    x, _ = _pair("random", torch.float32, shape=(3, 1, 20, 20))
    assert torch.isinf(M.psnr(x, x, data_range=1.0)).all()
    assert torch.allclose(M.ssim(x, x, data_range=1.0), torch.ones(3, dtype=torch.float64))
    assert (M.mae(x, x) == 0).all()
    mask = torch.zeros(3, 1, 20, 20, dtype=torch.bool)
    mask[1] = True
    mask[2, :, 0, 0] = True  # only a border pixel: outside SSIM's valid region
    y = x.flip(-1)
    for fn in (lambda m: M.psnr(x, y, data_range=1.0, mask=m), lambda m: M.mae(x, y, mask=m), lambda m: M.nmse(x, y, mask=m)):
        v = fn(mask)
        assert math.isnan(v[0].item()) and math.isfinite(v[1].item()) and math.isfinite(v[2].item())
    s = M.ssim(x, y, data_range=1.0, mask=mask)
    assert math.isnan(s[0].item()) and math.isfinite(s[1].item()) and math.isnan(s[2].item())


def test_mixed_dtypes_promote_and_outputs_stay_on_device():
    pred, target = _pair("random", torch.float32)
    out = M.ssim(pred, target.double(), data_range=1.0)
    ref = M.ssim(pred.double(), target.double(), data_range=1.0)
    assert torch.allclose(out, ref, atol=0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        p, t, m = pred.to(dev), target.to(dev), _mask(pred.shape).to(dev)
        for v in (M.psnr(p, t, data_range=1.0, mask=m), M.ssim(p, t, data_range=1.0, mask=m), M.mae(p, t, mask=m), M.nmse(p, t, mask=m)):
            assert v.device.type == dev and v.dtype == torch.float64 and v.shape == (len(pred),)
        if dev == "cuda":
            assert torch.allclose(M.ssim(p, t, data_range=1.0).cpu(), M.ssim(pred, target, data_range=1.0), atol=1e-5)


def test_ssim_is_differentiable():
    x = torch.rand(2, 1, 13, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = torch.rand(2, 1, 13, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mask = _mask(x.shape)
    assert torch.autograd.gradcheck(lambda a: M.ssim(a, y, data_range=1.0, mask=mask, window="uniform"), (x,))
    assert torch.autograd.gradcheck(lambda a: M.psnr(a, y, data_range=1.0, mask=mask), (x,))


def test_input_errors_are_one_line_user_errors():
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(DataError, match="differs from target shape"):
        M.psnr(x, torch.rand(2, 1, 16, 15), data_range=1.0)
    with pytest.raises(DataError, match=r"expected \(B, 1, H, W\)"):
        M.ssim(x[:, 0], x[:, 0], data_range=1.0)
    with pytest.raises(DataError, match="bool"):
        M.mae(x, x, mask=torch.ones_like(x))
    with pytest.raises(ConfigError, match="data_range must be finite and > 0"):
        M.psnr(x, x, data_range=0.0)
    with pytest.raises(ConfigError, match="2 images"):
        M.psnr(x, x, data_range=torch.ones(3))
    with pytest.raises(DataError, match="smaller than the 11x11 gaussian SSIM window"):
        M.ssim(torch.rand(1, 1, 9, 30), torch.rand(1, 1, 9, 30), data_range=1.0)
    with pytest.raises(ConfigError, match="unknown SSIM window"):
        M.ssim(x, x, data_range=1.0, window="box")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- aggregation


def _results() -> pd.DataFrame:
    # subject 0: psnr 10, 20, nan ; subject 1: 40 ; subject 2: 30, 32
    return pd.DataFrame(
        {
            "subject": [0, 0, 0, 1, 2, 2],
            "slice": [0, 1, 2, 0, 0, 1],
            "psnr": [10.0, 20.0, np.nan, 40.0, 30.0, 32.0],
            "ssim": [0.5, 0.7, 0.9, 0.8, 0.6, 0.6],
        }
    )


def test_aggregate_per_subject_known_answer():
    out = aggregate(_results(), level="subject").set_index("metric")
    subj_psnr = np.array([15.0, 40.0, 31.0])
    assert list(out.index) == ["psnr", "ssim"]
    assert out.loc["psnr", "mean"] == pytest.approx(subj_psnr.mean())
    assert out.loc["psnr", "std"] == pytest.approx(subj_psnr.std(ddof=0))
    assert out.loc["psnr", "median"] == pytest.approx(31.0)
    assert out.loc["psnr", "n"] == 3
    subj_ssim = np.array([0.7, 0.8, 0.6])
    assert out.loc["ssim", "mean"] == pytest.approx(subj_ssim.mean())
    sample = aggregate(_results(), ["psnr"], level="subject", ddof=1)
    assert sample.loc[0, "std"] == pytest.approx(subj_psnr.std(ddof=1))


def test_aggregate_per_slice_and_by_column():
    frame = _results()
    out = aggregate(frame, ["psnr"], level="slice").iloc[0]
    vals = np.array([10.0, 20.0, 40.0, 30.0, 32.0])
    assert (out["mean"], out["median"], out["n"]) == (pytest.approx(vals.mean()), pytest.approx(30.0), 5)
    both = pd.concat([frame.assign(severity=0), frame.assign(severity=1, psnr=frame["psnr"] - 5)])
    split = aggregate(both, ["psnr"], by=["severity"]).set_index("severity")
    assert split.loc[0, "mean"] == pytest.approx(np.mean([15.0, 40.0, 31.0]))
    assert split.loc[1, "mean"] == pytest.approx(np.mean([10.0, 35.0, 26.0]))


def test_aggregate_errors():
    with pytest.raises(DataError, match="lacks column"):
        aggregate(_results().drop(columns="subject"))
    with pytest.raises(ConfigError, match="aggregation level"):
        aggregate(_results(), level="volume")  # type: ignore[arg-type]
