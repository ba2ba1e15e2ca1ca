"""Slice pipeline pieces with known answers: normalisation, masks, slice selection, squares, split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robustmri.data.brainmask import threshold_mask
from robustmri.data.normalize import NORMALIZATIONS, normalize_volume, normalize_volumes
from robustmri.data.slices import SliceSpec, fit_square, parse_axis, parse_slices, select_slices, to_stack
from robustmri.data.split import load_split, make_split, parse_split, save_split, split_counts
from robustmri.errors import ConfigError, DataError

# ----------------------------------------------------------------------------- normalisation


def test_method_names_are_the_protocol_names() -> None:
    assert NORMALIZATIONS == ("none", "minmax", "percentile", "mean", "zscore")


def test_none_and_minmax() -> None:
    v = np.array([0.0, 1.0, 2.0, 3.0, 4.0], np.float32) + 10
    np.testing.assert_array_equal(normalize_volume(v, None, "none"), v)
    np.testing.assert_allclose(normalize_volume(v, None, "minmax"), [0, 0.25, 0.5, 0.75, 1.0])
    with pytest.raises(DataError, match="constant"):
        normalize_volume(np.ones(4, np.float32), None, "minmax")
    with pytest.raises(ConfigError, match="unknown normalisation"):
        normalize_volume(v, None, "max")


def test_percentile_clips_inside_the_brain() -> None:
    brain = np.linspace(0.0, 200.0, 201, dtype=np.float32)  # p0.5 = 1, p99.5 = 199
    v = np.concatenate([brain, [1000.0, -50.0]]).astype(np.float32)
    mask = np.concatenate([np.ones(201, bool), [False, False]])
    out = normalize_volume(v, mask, "percentile")
    assert out[100] == pytest.approx((100 - 1) / 198)
    assert out[0] == 0.0 and out[200] == 1.0
    assert out[-2] == 1.0 and out[-1] == 0.0  # outside-brain outliers are clipped too
    assert out.min() >= 0 and out.max() <= 1


def test_mean_per_volume_then_dataset_max() -> None:
    v = np.array([10.0, 1.0, 3.0], np.float32)
    np.testing.assert_allclose(normalize_volume(v, np.array([False, True, True]), "mean"), [5.0, 0.5, 1.5])
    a = np.array([1.0, 2.0, 3.0], np.float32)
    b = np.array([2.0, 2.0, 2.0], np.float32)
    out = normalize_volumes([a, b], [None, None], "mean")
    # step 1: a / 2 = [.5, 1, 1.5], b / 2 = [1, 1, 1]; dataset max 1.5
    np.testing.assert_allclose(out[0], [1 / 3, 2 / 3, 1.0], rtol=1e-6)
    np.testing.assert_allclose(out[1], [2 / 3, 2 / 3, 2 / 3], rtol=1e-6)
    # a single volume: the dataset max is its own max, i.e. v / max(v)
    np.testing.assert_allclose(normalize_volumes([a], [None], "mean")[0], a / 3, rtol=1e-6)


def test_zscore_uses_brain_voxels_only() -> None:
    v = np.array([1.0, 2.0, 3.0, 100.0], np.float32)
    out = normalize_volume(v, np.array([True, True, True, False]), "zscore")
    np.testing.assert_allclose(out[:3], np.array([-1.0, 0.0, 1.0]) / np.sqrt(2 / 3), rtol=1e-6)
    with pytest.raises(DataError, match="empty"):
        normalize_volume(v, np.zeros(4, bool), "zscore")


# ----------------------------------------------------------------------------- brain mask


def test_threshold_mask_fills_enclosed_holes() -> None:
    v = np.zeros((9, 9, 9), np.float32)
    v[2:7, 2:7, 2:7] = 1.0
    v[4, 4, 4] = 0.0  # dark 'ventricle' inside
    v[0, 0, 0] = 0.01  # noise below 5 % of the 99th percentile
    mask = threshold_mask([v])
    expected = np.zeros_like(mask)
    expected[2:7, 2:7, 2:7] = True
    np.testing.assert_array_equal(mask, expected)
    with pytest.raises(DataError, match="sub-9"):
        threshold_mask([np.zeros((4, 4, 4), np.float32)], source="sub-9")


# ----------------------------------------------------------------------------- slices


def test_parse_options() -> None:
    assert parse_slices("central:64") == SliceSpec("central", 64)
    assert parse_slices("brain:0.1") == SliceSpec("brain", 0.1)
    assert parse_slices("brain:25%") == SliceSpec("brain", 0.25)
    assert parse_slices("ALL") == SliceSpec("all")
    for bad in ("central:0", "brain:1.5", "middle:3", "central:x"):
        with pytest.raises(ConfigError, match="central:N"):
            parse_slices(bad)
    assert (parse_axis("axial"), parse_axis("coronal"), parse_axis("sagittal"), parse_axis(-1)) == (2, 1, 0, 2)
    with pytest.raises(ConfigError, match="axis"):
        parse_axis("oblique")


def test_select_slices_central_and_brain_fraction() -> None:
    mask = np.zeros((10, 4, 5), bool)
    assert select_slices(mask, SliceSpec("central", 3)).tolist() == [3, 4, 5]
    assert select_slices(mask, SliceSpec("central", 4)).tolist() == [3, 4, 5, 6]
    assert select_slices(mask, SliceSpec("central", 99)).tolist() == list(range(10))
    mask[2, :1] = True  # 5 / 20 = 25 %
    mask[7, :2] = True  # 50 %
    assert select_slices(mask, SliceSpec("brain", 0.25)).tolist() == [2, 7]
    assert select_slices(mask, SliceSpec("brain", 0.3)).tolist() == [7]
    vol = np.arange(24).reshape(2, 3, 4)
    assert to_stack(vol, 2).shape == (4, 2, 3) and to_stack(vol, 2)[1, 1, 2] == vol[1, 2, 1]


def test_fit_square_pad_crop_and_resize() -> None:
    stack = np.arange(8, dtype=np.float32).reshape(1, 4, 2) + 1
    padded = fit_square(stack, 4, "pad")
    expected = np.zeros((1, 4, 4), np.float32)
    expected[0, :, 1:3] = stack[0]
    np.testing.assert_array_equal(padded, expected)
    np.testing.assert_array_equal(fit_square(stack, 2, "crop"), stack[:, 1:3])
    # constant images stay constant under bilinear + antialias resizing, in both directions
    np.testing.assert_allclose(fit_square(np.full((2, 6, 6), 0.7, np.float32), 3), 0.7, rtol=1e-6)
    np.testing.assert_allclose(fit_square(np.full((2, 3, 3), 0.7, np.float32), 7), 0.7, rtol=1e-6)
    labels = np.array([[[True, False], [False, True]]])
    up = fit_square(labels, 4, label=True)
    assert up.dtype == bool
    np.testing.assert_array_equal(up[0], np.kron(labels[0], np.ones((2, 2), bool)))
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    small = fit_square(ramp, 3)
    assert small.shape == (1, 3, 3) and 0 <= small.min() and small.max() <= 1  # range kept


# ----------------------------------------------------------------------------- split


IDS = [f"sub-{i:03d}" for i in range(40)]


def _check_partition(manifest: dict, ids: list[str]) -> None:
    groups = [set(manifest[k]) for k in ("train", "val", "test", "unused")]
    assert sum(len(g) for g in groups) == len(ids)
    assert set().union(*groups) == set(ids)  # together with the sum: pairwise disjoint


def test_default_split_is_25_5_10_for_40_subjects_and_proportional_otherwise() -> None:
    m = make_split(IDS, None, seed=0)
    assert [len(m[k]) for k in ("train", "val", "test")] == [25, 5, 10]
    _check_partition(m, IDS)
    assert split_counts(8) == (5, 1, 2)  # round(8 * 5/40) = 1, round(8 * 10/40) = 2
    assert split_counts(100) == (62, 13, 25)
    assert split_counts(10, (0.6, 0.2, 0.2)) == (6, 2, 2)
    with pytest.raises(ConfigError, match="at most"):
        split_counts(10, (8, 2, 2))
    with pytest.raises(ConfigError, match="sum"):
        split_counts(10, (0.5, 0.2, 0.2))


def test_split_seeded_disjoint_and_with_unused_subjects() -> None:
    a, b, c = make_split(IDS, (25, 5, 10), 0), make_split(IDS[::-1], (25, 5, 10), 0), make_split(IDS, (25, 5, 10), 1)
    assert a == b  # input order does not matter, only the seed
    assert a["train"] != c["train"]
    m = make_split(IDS, (10, 2, 3), seed=3)
    assert [len(m[k]) for k in ("train", "val", "test", "unused")] == [10, 2, 3, 25]
    _check_partition(m, IDS)
    assert parse_split("25,5,10") == (25, 5, 10) and parse_split("0.7,0.1,0.2") == (0.7, 0.1, 0.2)
    assert parse_split(None) is None
    with pytest.raises(ConfigError, match="three counts"):
        parse_split("25,5")


def test_split_manifest_roundtrip_and_validation(tmp_path: Path) -> None:
    m = make_split(IDS, None, seed=7)
    path = save_split(m, tmp_path / "split.json")
    assert load_split(path, IDS) == m
    assert json.loads(path.read_text())["seed"] == 7
    gone = m["train"][0]
    with pytest.raises(DataError, match=f"lists subject {gone} that is not in the data folder"):
        load_split(path, [s for s in IDS if s != gone])
    bad = dict(m, val=m["val"] + [m["train"][0]])
    save_split(bad, tmp_path / "bad.json")
    with pytest.raises(DataError, match="both train and val"):
        load_split(tmp_path / "bad.json")
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "none.json")
