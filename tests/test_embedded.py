"""The embedded physics-based dataset: physics ordering, determinism, geometry, NIfTI round trip."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from robustmri.data.simulator import SynthConfig, synth_subject

from robustmri.data.embedded import embedded_slices, write_dataset
from robustmri.data.physics import inversion_recovery, null_ti, spin_echo
from robustmri.data.tissues import SEG_LABELS, label_interior
from robustmri.errors import ConfigError

CSF, GM, WM, OEDEMA, CORE = (SEG_LABELS[k] for k in ("csf", "gm", "wm", "oedema", "core"))

SMALL = SynthConfig(size=64, n_slices=12, seed=3)


@pytest.fixture(scope="module")
def lesion_subjects():
    cfg = SynthConfig(size=64, n_slices=12, seed=11, lesion_rate=1.0)
    return [synth_subject(i, cfg) for i in range(3)]


def test_physics_ordering_inside_labels(lesion_subjects):
    for subj in lesion_subjects:
        means = {
            c: {lab: float(img[subj.seg == lab].mean()) for lab in (CSF, GM, WM, OEDEMA)}
            for c, img in subj.images.items()
        }
        t1, t2, pd, fl = means["t1"], means["t2"], means["pd"], means["flair"]
        assert t1[WM] > t1[GM] > t1[CSF], t1
        assert t2[CSF] > t2[GM] > t2[WM], t2
        assert pd[CSF] > pd[GM] > pd[WM], pd
        assert fl[CSF] < min(fl[GM], fl[WM]), fl
        # CSF is nulled: pure CSF (ventricles), 1.3-2.5x as bright as WM on T2w, is darker than tissue
        # on FLAIR. Not black: TI nulls the nominal CSF T1, the subject's is jittered (+-11 %), and the
        # acquired matrix (75-100 %) spreads tissue signal into small ventricles (measured up to 0.51x)
        pure_csf = float(subj.images["flair"][label_interior(subj.seg, CSF)].mean())
        assert pure_csf < 0.6 * min(fl[GM], fl[WM]), (pure_csf, fl)
        assert float(subj.images["t2"][label_interior(subj.seg, CSF)].mean()) > 1.3 * t2[WM]
        # lesions: oedema dark on T1w, bright on T2w and FLAIR (BraTS appearance)
        assert t1[OEDEMA] < t1[WM] and t2[OEDEMA] > t2[WM] and fl[OEDEMA] > fl[WM]


@pytest.mark.parametrize("index, acquisition", [(0, "fixed"), (0, "varied"), (1, "varied"), (2, "varied"), (3, "varied")])
def test_noiseless_intensities_follow_signal_equations(index, acquisition):
    """With the full matrix (no truncation), no noise and no bias, pure tissue follows the signal
    equation of the sequence the subject's site drew (recorded in params.json)."""
    from robustmri.data.physics import spoiled_gradient_echo
    from robustmri.data.tissues import tissue_table

    cfg = SynthConfig(size=64, n_slices=12, seed=5, snr=0.0, bias_strength=0.0, acquisition=acquisition,
                      kspace_fraction=(1.0, 1.0), sulcal_widening=0.0, cortical_change=0.0)  # pure tissue stays pure
    subj = synth_subject(index, cfg)
    nominal_csf_t1 = tissue_table(subj.params["site"]["field_strength"])["csf"].t1
    kinds = set()
    for c, img in subj.images.items():
        seq = subj.params["sequences"][c]
        kinds.add(seq["kind"])
        expected = {}
        for tissue in ("csf", "gm", "wm"):
            p = subj.params["tissues"][tissue]
            if seq["kind"] == "se":
                expected[tissue] = float(spin_echo(p["pd"], p["t1_ms"], p["t2_ms"], seq["tr_ms"], seq["te_ms"]))
            elif seq["kind"] == "gre":
                expected[tissue] = float(spoiled_gradient_echo(p["pd"], p["t1_ms"], p["t2_ms"], seq["tr_ms"], seq["te_ms"],
                                                               seq["flip_deg"]))
            else:
                ti = null_ti(nominal_csf_t1, seq["tr_ms"])
                assert seq["ti_ms"] == pytest.approx(ti)
                expected[tissue] = float(inversion_recovery(p["pd"], p["t1_ms"], p["t2_ms"], seq["tr_ms"], seq["te_ms"], ti))
        for tissue, label in (("wm", WM), ("gm", GM)):
            pure = label_interior(subj.seg, label)
            assert pure.sum() > 50
            # inside pure tissue the typical value is the tissue's own signal equation; tolerances from
            # 20 subjects at 64^2 (3.3 mm voxels): WM within 4 %, GM (a 2-3 mm ribbon, never quite
            # pure at that size) within 13.2 %
            rel = 0.06 if tissue == "wm" else 0.16
            assert float(np.median(img[pure])) == pytest.approx(expected[tissue], rel=rel), (c, tissue)
        # partial volume mixes tissue signals: nothing exceeds the brightest tissue, which is reached
        brightest = max(expected.values())
        assert float(img.max()) <= brightest * (1 + 1e-4), c
        assert float(img.max()) >= 0.97 * brightest, c
    assert subj.images["t1"][subj.seg == 0].min() == 0.0  # noiseless background


def test_null_ti_nulls_the_tissue():
    ti = null_ti(2569.0, 9000.0)
    assert inversion_recovery(1.0, 2569.0, 329.0, 9000.0, 100.0, ti) == pytest.approx(0.0, abs=1e-12)


def test_rician_background_is_rayleigh():
    cfg = SynthConfig(size=64, n_slices=8, seed=2, snr=20.0, bias_strength=0.0)
    subj = synth_subject(0, cfg)
    sigma = subj.params["noise_sigma"]["t1"]
    from scipy.ndimage import binary_dilation

    far = ~binary_dilation(subj.seg > 0, iterations=4)  # background away from partial-volume edges
    bg = subj.images["t1"][far]
    assert bg.size > 5000
    assert bg.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.05)


def test_no_misregistration_shares_labels_voxel_for_voxel():
    subj = synth_subject(1, SMALL)
    for c, lab in subj.labels.items():
        assert np.array_equal(lab, subj.seg), c


def test_misregistration_moves_contrasts_against_t1():
    cfg = SynthConfig(size=64, n_slices=12, seed=3, misregistration_mm=3.0)
    subj = synth_subject(1, cfg)
    assert np.array_equal(subj.labels["t1"], subj.seg)
    for c in ("t2", "pd", "flair"):
        changed = (subj.labels[c] != subj.seg).mean()
        assert changed > 0.01, c
    assert set(subj.params["misregistration"]) == {"t2", "pd", "flair"}
    # anatomy and physics draws stay those of the aligned dataset (only motion is added)
    aligned = synth_subject(1, SMALL)
    assert np.array_equal(aligned.seg, subj.seg)


def test_misregistered_subjects_moves_only_those_and_keeps_every_draw():
    moved_all = SynthConfig(size=64, n_slices=12, seed=3, misregistration_mm=3.0)
    only_0 = SynthConfig(size=64, n_slices=12, seed=3, misregistration_mm=3.0, misregistered_subjects=(0,))
    # subject 0 is listed: the same volumes as when every subject is misregistered
    a, b = synth_subject(0, moved_all), synth_subject(0, only_0)
    for c in a.images:
        assert np.array_equal(a.images[c], b.images[c]), c
    # subject 1 is not: its contrasts stay aligned (labels equal the reference's voxel for voxel) ...
    moved, kept = synth_subject(1, moved_all), synth_subject(1, only_0)
    for c, lab in kept.labels.items():
        assert np.array_equal(lab, kept.seg), c
    assert (moved.labels["t2"] != moved.seg).mean() > 0.01
    # ... and it is the same subject: same anatomy, same T1, same acquisition draws; only T2 moved back
    assert np.array_equal(kept.seg, moved.seg)
    assert np.array_equal(kept.images["t1"], moved.images["t1"])
    assert not np.array_equal(kept.images["t2"], moved.images["t2"])
    assert kept.params["misregistration"]["t2"]["applied"] is False
    assert kept.params["misregistration"]["t2"]["translation_mm"] == moved.params["misregistration"]["t2"]["translation_mm"]
    with pytest.raises(ConfigError, match="misregistered_subjects"):
        SynthConfig(size=64, misregistered_subjects=(-1,))


def test_misregistration_splits_names_the_training_subjects():
    from robustmri.data.resolve import synth_options
    from robustmri.data.split import make_split

    opts = synth_options({"misregistration_mm": 6.0, "misregistration_splits": ["train"], "n_slices": 8}, 12, (8, 2, 2), 0)
    manifest = make_split([f"sub-{i:03d}" for i in range(12)], (8, 2, 2), 0)
    assert opts["misregistered_subjects"] == tuple(sorted(int(s[4:]) for s in manifest["train"]))
    assert "misregistration_splits" not in opts and opts["n_slices"] == 8
    assert synth_options({"misregistration_mm": 6.0}, 12, None, 0) == {"misregistration_mm": 6.0}
    for bad in (["training"], [], "train", ["train", "train"]):
        with pytest.raises(ConfigError, match="misregistration_splits must be"):
            synth_options({"misregistration_mm": 6.0, "misregistration_splits": bad}, 12, None, 0)
    with pytest.raises(ConfigError, match="needs misregistration_mm"):
        synth_options({"misregistration_splits": ["train"]}, 12, None, 0)


def test_same_seed_identical_other_seed_differs():
    a = synth_subject(2, SMALL)
    b = synth_subject(2, SMALL)
    for c in a.images:
        assert np.array_equal(a.images[c], b.images[c])
    assert np.array_equal(a.seg, b.seg)
    other = synth_subject(2, SynthConfig(size=64, n_slices=12, seed=4))
    assert not np.array_equal(a.images["t1"], other.images["t1"])
    assert not np.array_equal(a.seg, other.seg)
    assert not np.array_equal(a.images["t1"], synth_subject(3, SMALL).images["t1"])


def test_shapes_and_sizes():
    for size in (64, 128):
        cfg = SynthConfig(size=size, n_slices=4, seed=0, snr=0.0)
        subj = synth_subject(0, cfg)
        assert subj.images["t2"].shape == (size, size, 4)
        assert subj.images["t2"].dtype == np.float32
        assert subj.seg.dtype == np.uint8
        # the brain fills a sensible part of the field of view at every size
        assert 0.2 < subj.mask[:, :, 2].mean() < 0.6


def test_nifti_round_trip_and_byte_identical(tmp_path):
    cfg = SynthConfig(size=32, n_slices=6, seed=9, lesion_rate=0.5)
    out_a = write_dataset(tmp_path / "a", 2, cfg)
    out_b = write_dataset(tmp_path / "b", 2, cfg)
    subj = synth_subject(1, cfg)
    for name in ("t1", "t2", "pd", "flair", "seg"):
        fa = out_a / "sub-001" / f"{name}.nii.gz"
        assert fa.read_bytes() == (out_b / "sub-001" / f"{name}.nii.gz").read_bytes()
        img = nib.load(str(fa))
        np.testing.assert_allclose(img.affine, subj.affine)
        expected = subj.seg if name == "seg" else subj.images[name]
        np.testing.assert_array_equal(np.asarray(img.dataobj), expected)
    params = json.loads((out_a / "sub-001" / "params.json").read_text())
    assert params["config"]["size"] == 32 and params["seed"] == [9, 1]
    meta = json.loads((out_a / "dataset.json").read_text())
    assert meta["subjects"] == ["sub-000", "sub-001"]
    # the affine's voxel sizes are the documented ones
    zooms = nib.load(str(out_a / "sub-000" / "t1.nii.gz")).header.get_zooms()
    np.testing.assert_allclose(zooms, cfg.voxel_mm, rtol=1e-6)
    assert not list(tmp_path.glob(".*"))  # no temporary folders left


def test_write_dataset_failure_leaves_nothing(tmp_path, monkeypatch):
    import robustmri.data.embedded as emb

    calls = {"n": 0}
    real = emb.synth_subject

    def flaky(i, config):
        calls["n"] += 1
        if i == 1:
            raise RuntimeError("boom")
        return real(i, config)

    monkeypatch.setattr(emb, "synth_subject", flaky)
    with pytest.raises(RuntimeError):
        emb.write_dataset(tmp_path / "out", 3, SynthConfig(size=32, n_slices=4))
    assert calls["n"] == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"size": 0}, "size"),
        ({"n_slices": -1}, "n_slices"),
        ({"contrasts": ("t1", "dwi")}, "unknown contrast"),
        ({"contrasts": ("t1ce",)}, "cannot make contrast"),
        ({"lesion_rate": 1.5}, "lesion rate"),
        ({"field_strength": "7T"}, "field strength"),
    ],
)
def test_bad_config_one_line_errors(kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        SynthConfig(**kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_contrast_aliases_accepted():
    assert SynthConfig(contrasts=("T1w", "t2w", "t2f")).contrasts == ("t1", "t2", "flair")


def test_embedded_slices_tensor_view():
    data = embedded_slices(n_subjects=2, size=32, n_slices=4, seed=1, contrasts=("t1", "t2"))
    assert data["t1"].shape == (8, 1, 32, 32) and data["t1"].dtype.is_floating_point
    assert data["mask"].dtype == __import__("torch").bool
    assert float(data["t2"].min()) >= 0.0 and float(data["t2"].max()) == pytest.approx(1.0)
    assert data["subject"].tolist() == [0] * 4 + [1] * 4
    again = embedded_slices(n_subjects=2, size=32, n_slices=4, seed=1, contrasts=("t1", "t2"))
    assert again["t1"].equal(data["t1"])
    again["t1"].zero_()  # callers get copies: the cache is not corrupted
    assert embedded_slices(n_subjects=2, size=32, n_slices=4, seed=1, contrasts=("t1", "t2"))["t1"].equal(data["t1"])


def test_remodelling_exchanges_partial_volume_and_keeps_the_sum():
    """Known answers on a 1-D cortex (CSF | GM | WM along x): sulcal widening moves GM next to CSF
    into CSF, thickening moves WM next to GM into GM, thinning the reverse; sums never change."""
    from robustmri.data.remodel import remodel

    x = np.arange(40)
    csf = np.where(x < 10, 1.0, 0.0)[:, None, None] * np.ones((1, 4, 3))
    gm = np.where((x >= 10) & (x < 20), 1.0, 0.0)[:, None, None] * np.ones((1, 4, 3))
    wm = 1.0 - csf - gm
    f = {"csf": csf.astype(np.float32), "gm": gm.astype(np.float32), "wm": wm.astype(np.float32)}
    vox = (1.0, 1.0, 1.0)
    total = f["csf"] + f["gm"] + f["wm"]
    wide = remodel(f, vox, sulcal=0.8, cortical=0.0)
    assert wide["csf"].sum() > f["csf"].sum() and wide["gm"].sum() < f["gm"].sum()
    assert wide["gm"][10, 0, 0] < 0.5 and wide["gm"][15, 0, 0] == pytest.approx(1.0, abs=1e-3)  # only near CSF
    np.testing.assert_allclose(wide["wm"], f["wm"])
    thick = remodel(f, vox, sulcal=0.0, cortical=0.5)
    assert thick["gm"].sum() > f["gm"].sum() and thick["wm"][20, 0, 0] < 1.0 and thick["wm"][30, 0, 0] == pytest.approx(1.0)
    thin = remodel(f, vox, sulcal=0.0, cortical=-0.5)
    assert thin["gm"].sum() < f["gm"].sum() and thin["wm"][19, 0, 0] > 0.0
    for out in (wide, thick, thin):
        np.testing.assert_allclose(out["csf"] + out["gm"] + out["wm"], total, atol=1e-6)
        assert min(float(v.min()) for v in out.values()) >= 0.0


def test_kspace_truncation_keeps_the_band_and_rings_at_edges():
    from robustmri.data.acquisition import truncate_kspace

    n = 64
    x = np.arange(n)
    low = (1.0 + 0.5 * np.cos(2 * np.pi * 3 * x / n))[:, None, None] * np.ones((1, n, 2))  # inside the kept band
    np.testing.assert_allclose(truncate_kspace(low, 0.5), low, atol=1e-6)
    step = np.where((x > 16) & (x < 48), 1.0, 0.0)[:, None, None] * np.ones((1, n, 2))
    rung = truncate_kspace(step, 0.5)
    assert 1.05 < float(rung.max()) < 1.12  # Gibbs overshoot, about 9 % of the jump
    np.testing.assert_allclose(truncate_kspace(step, 1.0), step)


def test_subjects_differ_in_anatomy_site_and_slice_position():
    cfg = SynthConfig(size=64, n_slices=8, seed=0)
    params = [synth_subject(i, cfg).params for i in range(8)]
    assert len({p["site"]["profile"] for p in params}) >= 3
    assert len({round(p["subject_affine"]["slab_shift_mm"], 3) for p in params}) == 8
    shifts = [abs(p["subject_affine"]["slab_shift_mm"]) for p in params]
    assert max(shifts) > 4.0 and max(shifts) <= 8.0
    for key, hi in (("ventricle_expansion", 0.35), ("sulcal_widening", 0.5)):
        values = [p["anatomy"][key] for p in params]
        assert 0 <= min(values) and max(values) <= hi and max(values) - min(values) > hi / 4
    snrs = [p["sequences"]["t2"]["snr"] for p in params]
    assert 15 <= min(snrs) and max(snrs) <= 40 and max(snrs) - min(snrs) > 5
    classic = [synth_subject(i, SynthConfig.classic(size=64, n_slices=8)).params for i in range(2)]
    assert {p["site"]["profile"] for p in classic} == {"fixed"} and classic[0]["sequences"]["t2"]["snr"] == 30.0


def test_head_shells_surround_the_brain_and_change_nothing_inside():
    """--head: with the full matrix (no k-space spread), brain voxels and the segmentation are those
    of the skull-stripped subject; outside, the shells follow their tissues' signal equations: on
    T1w the scalp fat is brighter than WM and the bone between brain and scalp is dark."""
    base = dict(size=96, n_slices=6, seed=2, kspace_fraction=(1.0, 1.0), acquisition="fixed", snr=0.0, bias_strength=0.0)
    plain = synth_subject(0, SynthConfig(**base))
    head = synth_subject(0, SynthConfig(**base, head=True))
    assert plain.params["head_mm"] is None and set(head.params["head_mm"]) >= {"scalp_fat", "inner_table"}
    np.testing.assert_array_equal(head.seg, plain.seg)
    from scipy.ndimage import distance_transform_edt

    brain = plain.seg > 0
    d = distance_transform_edt(~brain, sampling=SynthConfig(**base).voxel_mm)
    air = plain.images["t1"] == 0.0  # no brain at all, even partial (thick slices reach far in-plane)
    assert air.mean() > 0.3
    for c in plain.images:
        np.testing.assert_array_equal(head.images[c][brain], plain.images[c][brain])
        assert head.images[c][air].max() > 0.0
    t1 = head.images["t1"]
    wm = float(np.median(t1[plain.seg == 3]))
    mm = head.params["head_mm"]
    fat_at = mm["rim"] + mm["inner_table"] + mm["diploe"] + mm["outer_table"] + 0.5 * mm["scalp_fat"]
    ring = (~brain) & (np.abs(d - fat_at) < 1.5) & (d > 4)
    assert ring.sum() > 50 and float(np.percentile(t1[ring], 90)) > 1.1 * wm  # fat is bright on T1w
    far = d > sum(mm.values()) + 12  # beyond the head (smoothing of the outline adds a few mm): air
    assert far.any() and float(t1[far].max()) == 0.0
