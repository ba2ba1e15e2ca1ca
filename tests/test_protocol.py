"""robustmri.protocol: presets against hand-written re-statements of each peer's procedure."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from robustmri import metrics as M
from robustmri.errors import ConfigError, DataError
from robustmri.results import aggregate_protocol
from robustmri.protocol import (
    PRESETS,
    Protocol,
    check_same_protocol,
    concat_results,
    get_protocol,
    list_protocols,
    tag_results,
)

# Pinned ids: a change here means a preset's scoring changed; bump it only on purpose.
PINNED_IDS = {
    "robustmri": "robustmri-e023d715",
    "resvit": "resvit-d44ade8b",
    "syndiff": "syndiff-68f33bc5",
    "reggan": "reggan-66e6e9cf",
    "selfrdb": "selfrdb-68f07bb8",
}


def _grid(shape, seed, lo=0, hi=64) -> np.ndarray:
    """Values k/64 (exact in float32 under x*2-1 and (x+1)/2), uniform in [lo/64, hi/64]."""
    return np.random.default_rng(seed).integers(lo, hi + 1, size=shape) / 64.0


def _io(unit: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(2.0 * unit - 1.0).float()


# ---------------------------------------------------------------------------------- presets


def test_robustmri_scores_within_brain_mask():
    target = _grid((3, 1, 32, 32), 0, 8, 56)
    mask = np.zeros(target.shape, dtype=bool)
    mask[:, :, 6:26, 4:28] = True
    pred = np.where(mask, target + 0.125, target - 0.5)  # small error inside, large outside
    p, t, m = torch.from_numpy(pred).float(), torch.from_numpy(target).float(), torch.from_numpy(mask)
    out = get_protocol("robustmri").score(p, t, mask=m)
    assert list(out) == ["psnr", "ssim", "mae", "nmse"]
    assert out["psnr"].tolist() == pytest.approx([20 * math.log10(8)] * 3, abs=1e-4)  # MSE = 1/64
    assert out["mae"].tolist() == pytest.approx([0.125] * 3, abs=1e-6)
    nmse_ref = [0.125**2 / np.mean(target[i][mask[i]] ** 2) for i in range(3)]
    assert out["nmse"].tolist() == pytest.approx(nmse_ref, rel=1e-5)
    for i in range(3):  # Gaussian SSIM map averaged within mask & valid region
        _, smap = sk_ssim(target[i, 0], pred[i, 0], data_range=1.0, full=True, gaussian_weights=True, sigma=1.5,
                          use_sample_covariance=False)
        assert out["ssim"][i].item() == pytest.approx(smap[5:-5, 5:-5][mask[i, 0, 5:-5, 5:-5]].mean(), abs=1e-5)
    with pytest.raises(DataError, match="pass mask="):
        get_protocol("robustmri").score(p, t)


def _resvit_reference(pred_io: np.ndarray, target_io: np.ndarray) -> tuple[list[float], list[float]]:
    """ResViT train.py validation, restated: *0.5+0.5, L1 raw, PSNR on x/x.max with range 1, skip -> 0."""
    psnrs, maes = [], []
    for p, t in zip(pred_io, target_io):
        p, t = p * 0.5 + 0.5, t * 0.5 + 0.5
        if t.max() <= 0:
            psnrs.append(0.0)
            maes.append(0.0)
            continue
        maes.append(float(np.abs(p - t).mean()))
        with np.errstate(divide="ignore"):  # identical images: PSNR = inf, as in scikit-image
            psnrs.append(float(sk_psnr(p / p.max(), t / t.max(), data_range=1.0)))
    return psnrs, maes


def test_resvit_per_image_max_and_empty_slices_count_as_zero():
    target = _grid((3, 1, 24, 24), 1, 4, 60)
    target[2] = 0.0  # an empty slice
    pred = 0.5 * target  # a pure scale error: invisible to PSNR after per-image max normalisation
    pred[1] = np.clip(pred[1] + _grid((1, 24, 24), 2, 0, 8), 0, 1)
    p, t = _io(pred), _io(target)
    out = get_protocol("resvit").score(p, t)
    assert set(out) == {"psnr", "mae"}
    assert math.isinf(out["psnr"][0].item())  # scale error removed by x / x.max()
    assert out["mae"][0].item() == pytest.approx(0.5 * target[0].mean(), abs=1e-6)  # MAE before normalisation
    ref_psnr, ref_mae = _resvit_reference(p.numpy().astype(np.float64), t.numpy().astype(np.float64))
    assert out["psnr"][1].item() == pytest.approx(ref_psnr[1], abs=1e-4)
    assert out["mae"].tolist() == pytest.approx(ref_mae, abs=1e-6)
    assert out["psnr"][2].item() == 0.0 and out["mae"][2].item() == 0.0
    # slice-level mean that counts the skipped slice's zero, like np.mean over the array
    proto = get_protocol("resvit")
    frame = proto.results_frame({"psnr": out["psnr"].clamp(max=50), "mae": out["mae"]}, [0, 0, 1], [0, 1, 0])
    summary = aggregate_protocol(frame, proto).set_index("metric")
    assert summary.loc["mae", "mean"] == pytest.approx(np.mean(ref_mae))
    assert summary.loc["mae", "n"] == 3


def test_syndiff_crop_pred_max_and_torchvision_offsets():
    target = _grid((2, 1, 256, 256), 3, 0, 48)
    pred = target.copy()
    rows, cols = slice(0, 256), slice(52, 204)  # CenterCrop((256, 152)) on 256x256
    pred[0, 0, 100:110, 60:70] += 0.125  # error inside the crop
    pred[:, :, :, :40] = 0.1  # differences outside the crop (below the max) must not count
    pred[0, 0, 10, 20] = 1.0  # slice 0's brightest pixel lies outside the crop: fake.max() < 1 inside
    p, t = _io(pred), _io(target)
    out = get_protocol("syndiff").score(p, t)
    assert list(out) == ["psnr"]
    # SynDiff test.py restated: [0,1], x / x.max() on the whole image, crop, fake.max() / rmse
    pu, tu = pred / pred.max(axis=(2, 3), keepdims=True), target / target.max(axis=(2, 3), keepdims=True)
    pc, tc = pu[0, 0, rows, cols], tu[0, 0, rows, cols]
    expected = 20 * np.log10(pc.max() / np.sqrt(np.mean((pc - tc) ** 2)))
    assert out["psnr"][0].item() == pytest.approx(expected, abs=1e-4)
    assert math.isinf(out["psnr"][1].item())  # slice 1 differs only outside the crop
    crop = get_protocol("syndiff")._crop
    x = torch.zeros(1, 1, 259, 155)
    x[..., 2, 2] = 1.0  # torchvision: top = round(1.5) = 2, left = round(1.5) = 2
    assert crop(x)[0, 0, 0, 0].item() == 1.0 and crop(x).shape[-2:] == (256, 152)
    with pytest.raises(DataError, match="crops 256x152"):
        get_protocol("syndiff").score(torch.zeros(1, 1, 128, 128), torch.zeros(1, 1, 128, 128))


def test_reggan_masks_mae_and_psnr_but_not_ssim():
    target = _grid((2, 1, 40, 40), 4, 16, 64)
    target[:, :, :, :10] = 0.0  # background: exactly -1 in [-1, 1]
    pred = np.clip(target + _grid((2, 1, 40, 40), 5, 0, 6) - 3 / 64, 0, 1)
    pred[:, :, :, :10] = 0.25  # a large background error, ignored by MAE and PSNR only
    p, t = _io(pred), _io(target)
    out = get_protocol("reggan").score(p, t)
    pn, tn = p.numpy().astype(np.float64), t.numpy().astype(np.float64)
    for i in range(2):
        fg = tn[i, 0] != -1  # CycTrainer.PSNR / MAE: np.where(real != -1)
        mse = np.mean(((pn[i, 0][fg] + 1) / 2 - (tn[i, 0][fg] + 1) / 2) ** 2)
        assert out["psnr"][i].item() == pytest.approx(20 * np.log10(1 / np.sqrt(mse)), abs=1e-4)
        assert out["mae"][i].item() == pytest.approx(np.abs(pn[i, 0][fg] - tn[i, 0][fg]).mean() / 2, abs=1e-6)
        # compare_ssim(fake_B, real_B): whole [-1, 1] image, 7x7 uniform, data_range 2 from the dtype
        ref_ssim = sk_ssim(pn[i, 0], tn[i, 0], data_range=2.0)
        assert out["ssim"][i].item() == pytest.approx(ref_ssim, abs=1e-5)
        masked_ssim = M.ssim(p[i : i + 1], t[i : i + 1], data_range=2.0, window="uniform",
                             mask=torch.from_numpy(fg)[None, None])
        assert abs(masked_ssim.item() - ref_ssim) > 1e-3  # the background really changes SSIM
    same = get_protocol("reggan").score(t, t)
    assert same["psnr"].tolist() == [100.0, 100.0]  # "if mse < 1.0e-10: return 100"


def _selfrdb_reference(target_io, pred_io, mask):
    """SelfRDB utils.compute_metrics restated: [0,1] + clip, x*mask, |x|/mean, range gt.max()."""
    gt = np.clip((target_io + 1) / 2, 0, 1) * mask
    pr = np.clip((pred_io + 1) / 2, 0, 1) * mask
    gt = np.abs(gt) / np.abs(gt).mean(axis=(-1, -2), keepdims=True)
    pr = np.abs(pr) / np.abs(pr).mean(axis=(-1, -2), keepdims=True)
    psnrs = [sk_psnr(g, p, data_range=g.max()) for g, p in zip(gt[:, 0], pr[:, 0])]
    ssims = [sk_ssim(g, p, data_range=g.max()) for g, p in zip(gt[:, 0], pr[:, 0])]
    return np.array(psnrs), np.array(ssims)


def test_selfrdb_zero_mask_mean_norm_and_subject_aggregation():
    target = _grid((4, 1, 32, 32), 6, 4, 64)
    pred = np.clip(target * 0.9 + _grid((4, 1, 32, 32), 7, 0, 8), 0, 1)
    pred_io = 2 * pred - 1.2  # below -1 in places: clipped after mapping
    mask = np.zeros(target.shape, dtype=bool)
    mask[:, :, 4:28, 6:30] = True
    proto = get_protocol("selfrdb")
    out = proto.score(torch.from_numpy(pred_io).float(), _io(target), mask=torch.from_numpy(mask))
    ref_psnr, ref_ssim = _selfrdb_reference(
        2 * target - 1, torch.from_numpy(pred_io).float().numpy().astype(np.float64), mask
    )
    np.testing.assert_allclose(out["psnr"].numpy(), ref_psnr, atol=1e-4)
    np.testing.assert_allclose(out["ssim"].numpy(), ref_ssim, atol=1e-5)
    frame = proto.results_frame(out, subject=[0, 0, 1, 1], slice_index=[0, 1, 0, 1])
    summary = aggregate_protocol(frame, proto).set_index("metric")
    subject_means = np.array([ref_psnr[:2].mean(), ref_psnr[2:].mean()])
    assert summary.loc["psnr", "mean"] == pytest.approx(subject_means.mean(), abs=1e-4)
    assert summary.loc["psnr", "std"] == pytest.approx(subject_means.std(), abs=1e-4)  # nanstd, ddof 0


def test_threshold_rules_and_their_inputs():
    target = _grid((2, 1, 20, 20), 8)
    pred = np.clip(target + 0.125, 0, 1)
    p, t = torch.from_numpy(pred).float(), torch.from_numpy(target).float()
    proto = Protocol(name="t", mask="threshold", mask_threshold=0.3, metrics=("mae", "psnr"))
    out = proto.score(p, t)
    expected = M.mae(p, t, mask=t > 0.3)
    assert torch.equal(out["mae"], expected)
    src = Protocol(name="s", mask="source_threshold", mask_threshold=0.5, metrics=("mae",))
    source = torch.from_numpy(_grid((2, 1, 20, 20), 9)).float()
    assert torch.equal(src.score(p, t, source=source)["mae"], M.mae(p, t, mask=source > 0.5))
    with pytest.raises(DataError, match="pass source="):
        src.score(p, t)


def test_empty_targets_are_nan_under_the_default_protocol():
    t = torch.zeros(2, 1, 16, 16)
    t[1, :, 4:12, 4:12] = 0.5
    mask = torch.ones_like(t, dtype=torch.bool)
    out = get_protocol("robustmri").score(t + 0.1, t, mask=mask)
    for name, v in out.items():
        assert math.isnan(v[0].item()) and math.isfinite(v[1].item()), name


# ---------------------------------------------------------------------------------- identity


def test_ids_are_pinned_stable_and_field_sensitive():
    assert {n: p.id for n, p in PRESETS.items()} == PINNED_IDS
    base = get_protocol("robustmri")
    assert Protocol(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}).id == base.id
    assert dataclasses.replace(base, reference="another note").id == base.id  # free text is not identity
    assert dataclasses.replace(base, data_range_value=0.5).id != base.id
    assert dataclasses.replace(base, ssim_window="uniform").id != base.id
    assert dataclasses.replace(base, name="mine").id.startswith("mine-")
    # canonical forms: order of metric lists and int/float spellings do not matter
    a = Protocol(name="x", metrics=("ssim", "psnr"), masked_metrics=("psnr", "ssim"), data_range_value=1)
    b = Protocol(name="x", metrics=("psnr", "ssim"), masked_metrics=("ssim", "psnr"), data_range_value=1.0)
    assert a == b and a.id == b.id
    assert len({p.id for p in PRESETS.values()}) == len(PRESETS)


def test_dict_and_json_round_trip():
    for proto in PRESETS.values():
        back = Protocol.from_dict(json.loads(json.dumps(proto.to_dict())))
        assert back == proto and back.id == proto.id and back.reference == proto.reference


def test_invalid_protocols_raise_config_errors():
    with pytest.raises(ConfigError, match="unknown protocol field"):
        Protocol.from_dict({"name": "x", "windw": "uniform"})
    with pytest.raises(ConfigError, match="mask_mode='sometimes' is invalid; use one of select, zero"):
        Protocol(name="x", mask_mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="mask_threshold is only used by threshold masks"):
        Protocol(name="x", mask="brain", mask_threshold=0.1)
    with pytest.raises(ConfigError, match="crop_size"):
        Protocol(name="x", mask="center_crop")
    with pytest.raises(ConfigError, match="not in metrics"):
        Protocol(name="x", metrics=("psnr",), masked_metrics=("ssim",))
    with pytest.raises(ConfigError, match="unknown metric"):
        Protocol(name="x", metrics=("psnr", "lpips"))
    with pytest.raises(ConfigError, match="has no effect with mask='none'"):
        Protocol(name="x", mask="none", masked_metrics=("psnr",))
    with pytest.raises(ConfigError, match=r"unknown protocol 'ixi'; valid protocols: reggan, resvit, robustmri, selfrdb, syndiff"):
        get_protocol("ixi")
    assert list_protocols() == sorted(PINNED_IDS)
    assert get_protocol(PINNED_IDS["reggan"]) is PRESETS["reggan"]


# ---------------------------------------------------------------------------------- results tagging


def _frame(proto: Protocol) -> pd.DataFrame:
    scores = {m: torch.tensor([1.0, 2.0], dtype=torch.float64) for m in proto.metrics}
    return proto.results_frame(scores, subject=["a", "b"], slice_index=[0, 0])


def test_results_tagging_and_mixing_protocols_raises():
    robust, reggan = get_protocol("robustmri"), get_protocol("reggan")
    f1, f2 = _frame(robust), _frame(robust)
    assert list(f1.columns) == ["subject", "slice", "psnr", "ssim", "mae", "nmse", "protocol"]
    assert (f1["protocol"] == robust.id).all()
    both = concat_results([f1, f2])
    assert len(both) == 4 and check_same_protocol(both) == robust.id
    with pytest.raises(ConfigError, match=f"mix protocols '{robust.id}' and '{reggan.id}'"):
        concat_results([f1, _frame(reggan)])
    with pytest.raises(ConfigError, match="no 'protocol' column"):
        check_same_protocol(f1.drop(columns="protocol"))
    with pytest.raises(ConfigError, match="already tagged"):
        tag_results(f1, reggan)
    with pytest.raises(ConfigError, match=f"scored with protocol '{robust.id}'"):
        aggregate_protocol(f1, reggan)


def test_default_protocol_on_embedded_slices():
    from robustmri.data.embedded import embedded_slices

    data = embedded_slices(n_subjects=2, size=64, n_slices=4, seed=0)
    proto = get_protocol("robustmri")
    same = proto.score(data["t2"], data["t2"], mask=data["mask"])
    assert torch.isinf(same["psnr"]).all() and torch.allclose(same["ssim"], torch.ones(8, dtype=torch.float64))
    cross = proto.score(data["t1"], data["t2"], mask=data["mask"])  # T1 as a (bad) T2 prediction
    assert torch.isfinite(cross["psnr"]).all() and (cross["psnr"] < 25).all() and (cross["ssim"] < 0.95).all()
    frame = proto.results_frame(cross, data["subject"], data["slice"])
    summary = aggregate_protocol(frame, proto).set_index("metric")
    assert summary.loc["psnr", "n"] == 2
    per_subject = frame.groupby("subject")["psnr"].mean()
    assert summary.loc["psnr", "mean"] == pytest.approx(per_subject.mean())


# ------------------------------------------------------- model space [0, 1] -> the preset's range


def _unit_case(seed: int = 11):
    """Model-space (0..1) target with a zero background and a noisy prediction, a brain mask."""
    target = _grid((3, 1, 40, 40), seed, 8, 60)
    target[:, :, :, :8] = 0.0
    pred = np.clip(target + _grid((3, 1, 40, 40), seed + 1, 0, 8) - 4 / 64, 0, 1)
    mask = np.zeros(target.shape, dtype=bool)
    mask[:, :, 4:36, 10:36] = True
    return pred, target, mask


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_score_unit_maps_model_space_into_the_presets_range(name):
    """What the bench and `robustmri eval` call: [0, 1] tensors, mapped into the preset's I/O range."""
    pred, target, mask = _unit_case()
    proto = get_protocol(name)
    p, t, m = torch.from_numpy(pred).float(), torch.from_numpy(target).float(), torch.from_numpy(mask)
    size = (256, 256) if name == "syndiff" else None
    if size:  # SynDiff crops 256x152: pad the case to 256x256
        p, t, m = (torch.nn.functional.pad(v.float(), (108, 108, 108, 108)) for v in (p, t, m))
        m = m.bool()
    unit = proto.score_unit(p, t, mask=m, source=t)
    io = (lambda v: v) if proto.io_range == "unit" else (lambda v: 2 * v - 1)
    direct = proto.score(io(p), io(t), mask=m, source=io(t))
    for metric in proto.metrics:
        np.testing.assert_allclose(unit[metric].numpy(), direct[metric].numpy(), rtol=1e-6, atol=1e-6)


def test_peer_presets_equal_the_peers_code_on_model_outputs():
    """The +6 dB regression: [0, 1] model outputs scored by a [-1, 1] preset. Each peer's metric
    code restated on the peer's own representation (2x - 1) must equal the preset's score of the
    model-space tensors, and scoring them raw (the old pipeline) inflates PSNR by about 6 dB."""
    pred, target, mask = _unit_case()
    p, t, m = torch.from_numpy(pred).float(), torch.from_numpy(target).float(), torch.from_numpy(mask)
    pn, tn = 2 * pred - 1, 2 * target - 1  # what ResViT, Reg-GAN and SelfRDB hold in memory

    resvit = get_protocol("resvit").score_unit(p, t)
    ref_psnr, ref_mae = _resvit_reference(pn, tn)
    np.testing.assert_allclose(resvit["psnr"].numpy(), ref_psnr, atol=1e-4)
    np.testing.assert_allclose(resvit["mae"].numpy(), ref_mae, atol=1e-6)

    reggan = get_protocol("reggan").score_unit(p, t)
    for i in range(3):
        fg = tn[i, 0] != -1  # background of the target is exactly -1 in Reg-GAN's representation
        assert fg.sum() < fg.size  # so the background really is excluded
        mse = np.mean(((pn[i, 0][fg] + 1) / 2 - (tn[i, 0][fg] + 1) / 2) ** 2)
        assert reggan["psnr"][i].item() == pytest.approx(20 * np.log10(1 / np.sqrt(mse)), abs=1e-4)
        assert reggan["mae"][i].item() == pytest.approx(np.abs(pn[i, 0][fg] - tn[i, 0][fg]).mean() / 2, abs=1e-6)
        assert reggan["ssim"][i].item() == pytest.approx(sk_ssim(pn[i, 0], tn[i, 0], data_range=2.0), abs=1e-5)

    selfrdb = get_protocol("selfrdb").score_unit(p, t, mask=m)
    ref_psnr, ref_ssim = _selfrdb_reference(tn, pn, mask)
    np.testing.assert_allclose(selfrdb["psnr"].numpy(), ref_psnr, atol=1e-4)
    np.testing.assert_allclose(selfrdb["ssim"].numpy(), ref_ssim, atol=1e-5)

    # the old pipeline passed [0, 1] tensors to score(), which read them as [-1, 1]
    raw = get_protocol("reggan").score(p, t)
    inflation = (raw["psnr"] - reggan["psnr"]).numpy()
    assert np.all(inflation > 4.0), inflation  # 6 dB from halving every error, less the mask change


def test_a_registered_metric_gets_the_protocols_images_region_and_range(monkeypatch):
    """A metric registered with data_range=True that computes PSNR must equal the protocol's own
    PSNR under a per-image range, a mask and an image normalisation; an image whose range is
    invalid (an all-zero target under target_max) scores NaN in both, without reaching the metric."""
    from robustmri import metrics as M

    monkeypatch.setattr(M, "_SPECS", dict(M._SPECS))
    seen: list[float] = []

    @M.register_metric("psnr_again", better="higher", data_range=True)
    def psnr_again(pred, target, *, mask=None, data_range):
        seen.extend(data_range.tolist())
        return M.psnr(pred, target, data_range=data_range, mask=mask)

    proto = Protocol(name="t", data_range="target_max", image_norm="per_image_max", norm_metrics=("psnr", "psnr_again"),
                     metrics=("psnr", "psnr_again"), mask="threshold", mask_threshold=0.05)
    assert proto.metrics == ("psnr", "psnr_again")
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 1, 32, 32, generator=g)
    pred = (target + 0.1 * torch.randn(3, 1, 32, 32, generator=g)).clamp(0, 1)
    target[2] = 0.0
    out = proto.score(pred, target)
    np.testing.assert_allclose(out["psnr_again"][:2].numpy(), out["psnr"][:2].numpy(), rtol=1e-12)
    assert math.isnan(float(out["psnr"][2])) and math.isnan(float(out["psnr_again"][2]))
    assert all(math.isfinite(r) and r > 0 for r in seen)  # the metric never saw an invalid range
    frame = proto.results_frame(out, [0, 0, 1], [0, 1, 0])
    assert list(frame.columns) == ["subject", "slice", "psnr", "psnr_again", "protocol"]
