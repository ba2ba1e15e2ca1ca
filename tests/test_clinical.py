"""Clinical utility (issue 29, part 1): lesions in the embedded test subjects, lesion scores with known
answers, and the bench's clinical.csv with the report's table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from robustmri.clinical.lesions import DETECT_CONTRAST, detect, subject_lesion_scores
from robustmri.data.tissues import SEG_LABELS

WM, WMH, GM = SEG_LABELS["wm"], SEG_LABELS["wmh"], SEG_LABELS["gm"]


def _phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four 64x64 slices of white matter (0.5, noise sd 0.02) with grey matter around it and two
    bright round lesions (0.8) on slices 1 and 2: (image, labels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    labels = np.full((4, 64, 64), GM, dtype=np.uint8)
    labels[:, 8:56, 8:56] = WM
    image = np.where(labels == WM, 0.5, 0.35) + rng.normal(0, 0.02, size=labels.shape)
    for k, (cy, cx) in ((1, (24, 24)), (2, (40, 36))):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
        labels[k][disc] = WMH
        image[k][disc] = 0.8 + rng.normal(0, 0.02, size=int(disc.sum()))
    return image.clip(0, 1), labels


def test_the_real_target_keeps_every_lesion_and_invents_none() -> None:
    image, labels = _phantom()
    scores = subject_lesion_scores(image, image, labels, spacing_mm=1.0)
    assert scores["lesions"] == 2 and scores["detector_sensitivity"] == 1.0
    assert scores["lesions_kept"] == 1.0 and scores["lesions_invented"] == 0.0
    assert scores["contrast_kept"] == pytest.approx(1.0)
    assert scores["lesion_psnr"] == math.inf and scores["lesion_mae"] == 0.0 and scores["lesion_ssim"] == pytest.approx(1.0)
    assert scores["lesion_contrast_real"] == pytest.approx(0.6, abs=0.02)  # (0.8 - 0.5) / 0.5


def test_a_model_that_blurs_lesions_away_loses_them() -> None:
    image, labels = _phantom()
    flat = image.copy()
    flat[labels == WMH] = 0.5 + np.random.default_rng(1).normal(0, 0.02, size=int((labels == WMH).sum()))
    scores = subject_lesion_scores(flat, image, labels, spacing_mm=1.0)
    assert scores["lesions_kept"] == 0.0 and scores["lesions_invented"] == 0.0
    assert abs(scores["contrast_kept"]) < 0.1
    assert scores["lesion_psnr"] < 15  # 0.3 off inside the lesions: about 10.5 dB


def test_a_model_that_paints_a_bright_blob_invents_a_lesion() -> None:
    image, labels = _phantom()
    painted = image.copy()
    yy, xx = np.mgrid[:64, :64]
    painted[0][(yy - 45) ** 2 + (xx - 15) ** 2 <= 9] = 0.85  # slice 0: no lesion there
    scores = subject_lesion_scores(painted, image, labels, spacing_mm=1.0)
    assert scores["lesions_invented"] == 1.0 and scores["lesions_kept"] == 1.0
    tiny = image.copy()
    tiny[0, 45, 15] = 0.85  # one pixel: under the detector's smallest area (8 mm²)
    assert subject_lesion_scores(tiny, image, labels, spacing_mm=1.0)["lesions_invented"] == 0.0


def test_the_detector_is_two_sided_and_follows_its_threshold() -> None:
    image, labels = _phantom()
    dark = np.where(labels == WMH, 0.2, image)  # a T1w-like lesion: darker than white matter
    assert subject_lesion_scores(dark, dark, labels, spacing_mm=1.0)["detector_sensitivity"] == 1.0
    found = detect(image, labels, spacing_mm=1.0)
    assert found.centre == pytest.approx(0.5, abs=0.005) and found.threshold == pytest.approx(DETECT_CONTRAST * found.centre)
    faint = np.where(labels == WMH, 0.5 * (1 + 0.5 * DETECT_CONTRAST), image)  # half the contrast threshold
    assert subject_lesion_scores(faint, faint, labels, spacing_mm=1.0)["detector_sensitivity"] == 0.0
    # the threshold is a contrast: a smooth (noise-free) image finds no more than the noisy one
    smooth = np.where(labels == WMH, 0.8, np.where(labels == WM, 0.5, 0.35))
    assert subject_lesion_scores(smooth, image, labels, spacing_mm=1.0)["lesions_invented"] == 0.0


def test_lesions_in_the_chosen_subjects_leave_everything_else_as_it_was() -> None:
    from scipy import ndimage

    from robustmri.data.simulator import SynthConfig, synth_subject

    # a fixed acquisition (no k-space truncation spreads a change) without noise: the same to float32
    # rounding (the tumour rescales every tissue fraction by (brain - lesion) / brain, 1 up to rounding)
    base = dict(size=64, n_slices=6, acquisition="fixed", seed=3, snr=0.0)
    plain = SynthConfig(**base)
    lesioned = SynthConfig(**base, lesion_types=("tumour", "wmh"), lesioned_subjects=(1, 2))
    assert synth_subject(0, lesioned).images["t2"].tobytes() == synth_subject(0, plain).images["t2"].tobytes()
    for index, labels in ((1, (SEG_LABELS["oedema"], SEG_LABELS["core"])), (2, (WMH,))):
        a, b = synth_subject(index, plain), synth_subject(index, lesioned)
        present = set(np.unique(b.seg)) & {SEG_LABELS["oedema"], SEG_LABELS["core"], WMH}
        assert present and present <= set(labels), (index, present)
        near = ndimage.binary_dilation(np.isin(b.seg, labels) | (a.seg != b.seg), iterations=2)
        for c in ("t1", "t2"):
            off = ~np.isclose(b.images[c], a.images[c], rtol=1e-6, atol=1e-6) & ~near
            if index == 1:  # the tumour: nothing changes beyond two voxels of its labels
                assert not off.any(), (index, c, int(off.sum()))
            else:  # small lesions also leave partial-volume rims under half a voxel, which no label marks
                assert off.sum() < 0.001 * (a.seg > 0).sum() and (a.seg[off] > 0).all(), (index, c, int(off.sum()))
        assert b.params["lesion"]["type"] == ("tumour" if index == 1 else "wmh")
    # with noise, the same draws scaled to the brain's mean signal, which the lesion moves a little
    noisy = dict(base, snr=30.0)
    a, b = synth_subject(2, SynthConfig(**noisy)), synth_subject(2, SynthConfig(**noisy, lesion_types=("wmh",), lesioned_subjects=(2,)))
    far = ~ndimage.binary_dilation(b.seg == WMH, iterations=2) & (a.seg > 0)
    ratio = np.abs(a.images["t2"][far] - b.images["t2"][far]) / np.maximum(a.images["t2"][far], 1e-3)
    assert np.quantile(ratio, 0.99) < 0.001  # all but the unlabelled partial-volume rims: within 0.1 %
    wmh = synth_subject(2, lesioned)
    inner = ndimage.binary_erosion(wmh.seg == WMH) if ndimage.binary_erosion(wmh.seg == WMH).any() else wmh.seg == WMH
    white = ndimage.binary_erosion(wmh.seg == WM)
    for contrast, brighter in (("t2", True), ("flair", True), ("t1", False)):
        lesion, normal = float(wmh.images[contrast][inner].mean()), float(wmh.images[contrast][white].mean())
        assert (lesion > normal) == brighter, (contrast, lesion, normal)


def test_the_suite_names_the_lesioned_splits(tmp_path) -> None:
    from robustmri.bench import load_suite
    from robustmri.data.resolve import synth_options
    from robustmri.data.simulator import subject_id
    from robustmri.data.split import make_split
    from robustmri.errors import ConfigError

    suite = load_suite("clinical")
    assert suite.clinical and suite.embedded_options["lesion_splits"] == ["test"]
    options = synth_options(suite.embedded_options, 24, suite.split, 0)
    test_ids = set(make_split([subject_id(i) for i in range(24)], suite.split, 0)["test"])
    assert {subject_id(i) for i in options["lesioned_subjects"]} == test_ids and len(test_ids) == 8
    bad = tmp_path / "bad.toml"
    bad.write_text(load_suite_text().replace('lesion_splits = ["test"]', 'lesion_splits = ["exam"]'))
    with pytest.raises(ConfigError, match="lesion_splits must be a list of distinct split names"):
        load_suite(bad)


def load_suite_text() -> str:
    from pathlib import Path

    import robustmri

    return (Path(robustmri.__file__).parent / "suites" / "clinical.toml").read_text()


SUITE = """
name = "clinical-test"
directions = ["t1->t2"]
seeds = [0]
reference_model = "pix2pix"
device = "cpu"

[data]
source = "embedded:6"
image_size = 64
split = [3, 0, 3]
embedded = { n_slices = 6, lesion_types = ["tumour", "wmh"], lesion_splits = ["test"] }

[train]
steps = 20
batch_size = 2

[[models]]
name = "pix2pix"

[[models]]
name = "lookup"

[perturbations]
names = ["gaussian_blur"]
severities = [5]

[eval]
batch_size = 4
clinical = true
"""


def test_the_bench_writes_clinical_rows_and_the_report_a_clinical_table(tmp_path, cache_dir) -> None:
    from robustmri.bench import load_suite, run_suite
    from robustmri.clinical import CLINICAL_SCORES
    from robustmri.publish import publish
    from robustmri.results import read_clinical

    (tmp_path / "s.toml").write_text(SUITE)
    out = run_suite(load_suite(tmp_path / "s.toml"), tmp_path / "out", cache=cache_dir, progress=False)
    clinical = read_clinical(out)
    assert clinical is not None and list(clinical.columns[-len(CLINICAL_SCORES):]) == list(CLINICAL_SCORES)
    assert len(clinical) == 2 * 2 * 3  # models x cells x test subjects
    assert (clinical["lesions"] > 0).all()  # every test subject has a lesion; the training subjects none
    results = pd.read_csv(out / "results.csv")
    assert set(results["subject"].astype(str)) == set(clinical["subject"])
    publish(out)
    table = (out / "report" / "tables" / "clinical_utility.md").read_text()
    assert "lesions kept" in table and "Detector on the real images" in table
    # whole-volume scores: each subject's 6 slices, 80 mm / 6 apart (the simulator's slab), stacked
    assert clinical["slice_gap_mm"].to_numpy() == pytest.approx(80.0 / 6, rel=1e-5)
    assert clinical["volume_slices"].eq(6).all()
    assert clinical["volume_ssim"].between(0.0, 1.0).all() and clinical["volume_psnr"].between(5, 60).all()
    assert "3-D SSIM" in (out / "report" / "tables" / "volume_scores.md").read_text()
    # the segmenter: trained once in the results folder, its ceiling the same for both models
    assert (out / "segmenters" / "t2" / "segmenter.pt").is_file()
    clean_rows = clinical[clinical["perturbation"] == "clean"]
    assert clean_rows.groupby("subject")["dice_real"].nunique().eq(1).all() and clinical["dice_real"].gt(0.5).all()
    assert "Dice lost" in (out / "report" / "tables" / "segmentation.md").read_text()
    # the lesion figure: the sample slice is the test slice with the most lesion voxels
    import numpy as np

    from robustmri.data.tissues import LESION_LABELS
    from robustmri.report.lesion_figure import lesion_figure

    with np.load(out / "samples" / "t1_to_t2.npz") as z:
        samples = {k: z[k] for k in z.files}
    assert np.isin(samples["labels"], LESION_LABELS).any() and float(samples["spacing"]) == pytest.approx(210 / 64)
    assert (out / "report" / "figures" / "lesions_t1_to_t2.png").is_file()
    html = (out / "report" / "report.html").read_text()
    assert "Clinical utility" in html and "Downstream segmentation" in html
    fig = lesion_figure(samples)
    assert fig is not None and len(fig.axes) == 2 * 5 + 1  # 2 models x (real, clean out/error, blur out/error) + colour bar
    assert lesion_figure({**samples, "labels": np.zeros_like(samples["labels"])}) is None
    assert lesion_figure({k: v for k, v in samples.items() if k != "labels"}) is None
    assert read_clinical(tmp_path) is None  # no clinical.csv: none
    import json

    entry = json.loads((out / "leaderboard" / "pix2pix__t1_to_t2.json").read_text())
    clean = clinical[(clinical["model"] == "pix2pix") & (clinical["perturbation"] == "clean")]
    assert entry["clinical"]["clean_lesions_invented"] == pytest.approx(clean["lesions_invented"].mean(), abs=1e-4)
    assert set(entry["clinical"]) == {f"{w}_{s}" for w in ("clean", "perturbed")
                                      for s in ("contrast_kept", "lesions_kept", "lesions_invented", "volume_psnr",
                                                "volume_ssim", "dice_mean")}
    assert entry["clinical"]["clean_volume_ssim"] == pytest.approx(clean["volume_ssim"].mean(), abs=1e-4)


def test_tumour_only_labels_give_the_scores_inside_the_tumour_and_nan_for_the_rest() -> None:
    """BraTS labels the tumour only: no normal white matter to compare with, no tissue to segment.
    The scores inside the tumour are given; contrast, detection and Dice are NaN, not errors."""
    import torch

    from robustmri.clinical import clinical_frame
    from robustmri.data.paired import PairedTensors

    image, labels = _phantom()
    tumour = np.where(labels == WMH, SEG_LABELS["core"], 0).astype(np.uint8)
    target = torch.from_numpy(image.astype(np.float32))[:, None]
    n = target.shape[0]
    data = PairedTensors(target, target, torch.ones_like(target, dtype=torch.bool), torch.zeros(n, dtype=torch.long),
                         torch.arange(n), ["s"], torch.ones(n, dtype=torch.float64), torch.from_numpy(tumour)[:, None])
    row = clinical_frame((target * 0.9).clamp(0, 1), data).iloc[0]
    assert row["lesions"] == 2 and math.isfinite(row["lesion_psnr"]) and row["lesion_psnr"] < 40
    assert math.isnan(row["contrast_kept"]) and math.isnan(row["dice_mean"])
