"""The clinical segmenter (robustmri.clinical.segmenter): Dice against MONAI's, lesions ignored, a
segmenter that learns tissue on held-out simulated subjects, the real target scoring exactly its
ceiling, a blurred one losing Dice, and a saved segmenter reused, not retrained."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustmri.clinical.segmenter import (
    FrozenSegmenter,
    SegmenterConfig,
    class_targets,
    load_or_train_segmenter,
    segment,
    subject_dice,
    train_segmenter,
)
from robustmri.data.tissues import SEG_LABELS

N_TRAIN = 32  # 4 subjects x 8 slices; the last 2 subjects are held out
STEPS = 150


@pytest.fixture(scope="module")
def tissue_data() -> tuple[torch.Tensor, torch.Tensor]:
    """6 simulated subjects at 64x64, 8 axial slices each: T2w scaled by its 99.5th brain
    percentile, clipped to [0, 1], and the tissue labels. (48, 1, 64, 64) each."""
    from robustmri.data.simulator import SynthConfig, synth_subject

    config = SynthConfig(size=64, n_slices=8, seed=0, contrasts=("t2",))
    images, labels = [], []
    for i in range(6):
        subject = synth_subject(i, config)
        vol = subject.images["t2"]
        vol = np.clip(vol / np.percentile(vol[subject.mask], 99.5), 0.0, 1.0)
        images.append(np.moveaxis(vol, 2, 0))
        labels.append(np.moveaxis(subject.seg, 2, 0))
    return (torch.from_numpy(np.concatenate(images)[:, None].astype(np.float32)),
            torch.from_numpy(np.concatenate(labels)[:, None].astype(np.uint8)))


@pytest.fixture(scope="module")
def trained(tissue_data) -> torch.nn.Module:
    images, labels = tissue_data
    model, loss = train_segmenter(images[:N_TRAIN], labels[:N_TRAIN], SegmenterConfig(steps=STEPS), "cpu")
    assert math.isfinite(loss)
    return model


def test_dice_equals_monai_dice_pooled_over_a_subject_s_slices() -> None:
    from monai.metrics import DiceMetric

    rng = np.random.default_rng(0)
    truth = rng.choice([0, 1, 2, 3], size=(5, 16, 16), p=[0.4, 0.1, 0.25, 0.25]).astype(np.uint8)
    labels = np.select([truth == 1, truth == 2, truth == 3], [SEG_LABELS["csf"], SEG_LABELS["gm"], SEG_LABELS["wm"]], 0)
    pred = np.where(rng.random(truth.shape) < 0.3, rng.integers(0, 4, truth.shape), truth)
    ours = subject_dice(pred, labels)

    def one_hot(a: np.ndarray) -> torch.Tensor:  # (1, 4, S, H, W): the subject's slices as one 3-D item
        return torch.nn.functional.one_hot(torch.from_numpy(a).long(), 4).permute(3, 0, 1, 2)[None].float()

    ref = DiceMetric(include_background=False, reduction="none")(one_hot(pred), one_hot(truth))[0]
    for k, name in enumerate(("csf", "gm", "wm")):
        assert ours[f"dice_{name}"] == pytest.approx(float(ref[k]), abs=1e-6)
    assert ours["dice_mean"] == pytest.approx(float(ref.mean()), abs=1e-6) and ours["dice_mean"] < 0.9


def test_lesion_voxels_count_for_no_class() -> None:
    labels = np.full((1, 8, 8), SEG_LABELS["wm"], dtype=np.uint8)
    labels[0, :4] = SEG_LABELS["wmh"]
    pred = np.full((1, 8, 8), 3)
    pred[0, :4] = 1  # the lesion read as CSF: not a CSF false positive, not a white-matter miss
    scores = subject_dice(pred, labels)
    assert scores["dice_wm"] == 1.0 and math.isnan(scores["dice_csf"]) and scores["dice_mean"] == 1.0
    assert (class_targets(torch.from_numpy(labels)[:, None]) == -100).sum() == 32


def test_the_segmenter_finds_tissue_on_held_out_subjects(tissue_data, trained) -> None:
    images, labels = tissue_data
    classes = segment(trained, images[N_TRAIN:])
    scores = subject_dice(classes, labels[N_TRAIN:, 0].numpy())
    # measured (2-core AMD EPYC): 0.73 and 0.74 on the two held-out subjects (CSF 0.60-0.63, grey matter
    # 0.77-0.80, white matter 0.80-0.81) after 150 steps at 64x64 on 4 subjects; 400 and 800 steps give
    # the same (0.71-0.74): partial volume at 3.3 mm pixels limits it. At 128x128: 0.79-0.82.
    assert scores["dice_mean"] > 0.65 and min(scores[f"dice_{c}"] for c in ("csf", "gm", "wm")) > 0.5


def test_the_real_target_scores_the_ceiling_and_a_blurred_one_loses_dice(tissue_data, trained) -> None:
    from robustmri.clinical import clinical_frame
    from robustmri.data.paired import PairedTensors

    images, labels = tissue_data
    target, lab = images[N_TRAIN:], labels[N_TRAIN:]
    n = target.shape[0]
    test = PairedTensors(target, target, lab > 0, torch.arange(n) // 8, torch.arange(n) % 8, ["a", "b"],
                         torch.full((n,), 210 / 64, dtype=torch.float64), lab, slice_mm=(torch.arange(n) % 8) * 10.0)
    segmenter = FrozenSegmenter(trained, {})
    exact = clinical_frame(target.clone(), test, segmenter)
    assert (exact["dice_mean"] == exact["dice_real"]).all() and (exact["dice_real"] > 0.65).all()
    from scipy import ndimage

    blurred = torch.from_numpy(ndimage.gaussian_filter(target.numpy(), (0, 0, 1.5, 1.5))).float()
    soft = clinical_frame(blurred, test, segmenter)
    lost = soft["dice_real"] - soft["dice_mean"]
    assert (lost > 0.02).all() and lost.mean() > 0.04  # measured 0.068 and 0.031 (sigma 1.5 px at 64x64)
    assert soft["dice_real"].tolist() == exact["dice_real"].tolist()  # the ceiling does not depend on the model
    without = clinical_frame(target.clone(), test)
    assert without["dice_mean"].isna().all() and without["dice_real"].isna().all()


def test_a_saved_segmenter_is_loaded_not_retrained_and_a_new_data_identity_retrains(tmp_path, tissue_data) -> None:
    images, labels = tissue_data
    config = SegmenterConfig(steps=3)
    calls: list[int] = []

    def data() -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        return images[:16], labels[:16]

    identity = {"data": "a", "embedded_options": {"slab_mm": (-20.0, 60.0)}}  # a tuple, saved as a JSON list
    first = load_or_train_segmenter(tmp_path, data, identity, config)
    again = load_or_train_segmenter(tmp_path, data, identity, config)
    assert len(calls) == 1 and again.info["train_slices"] == 16
    assert np.array_equal(first.classes(images[16:20]), again.classes(images[16:20]))
    load_or_train_segmenter(tmp_path, data, {"data": "b"}, config)
    assert len(calls) == 2


def test_training_is_deterministic_for_a_seed(tissue_data) -> None:
    images, labels = tissue_data
    a, _ = train_segmenter(images[:16], labels[:16], SegmenterConfig(steps=4), "cpu")
    b, _ = train_segmenter(images[:16], labels[:16], SegmenterConfig(steps=4), "cpu")
    c, _ = train_segmenter(images[:16], labels[:16], SegmenterConfig(steps=4, seed=1), "cpu")
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_labels_without_any_tissue_give_no_segmenter(tmp_path, tissue_data) -> None:
    """BraTS labels the tumour only: nothing to learn, no segmenter, the Dice columns stay NaN."""
    from robustmri.data.tissues import SEG_LABELS

    images, _ = tissue_data
    tumour_only = torch.zeros(16, 1, 64, 64, dtype=torch.uint8)
    tumour_only[:, :, 20:30, 20:30] = SEG_LABELS["core"]
    tumour_only[:, :, 18:20, 20:30] = SEG_LABELS["oedema"]
    assert load_or_train_segmenter(tmp_path, lambda: (images[:16], tumour_only), {"data": "brats"}, SegmenterConfig(steps=2)) is None
    assert not (tmp_path / "segmenter.pt").exists()
