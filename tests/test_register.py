"""Registration in `data prepare --register`: embedded subjects simulated with a known rigid
misregistration are realigned by mutual information within 0.5 mm and 0.5 degrees."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robustmri.data.deform import rotation_matrix
from robustmri.errors import DataError

MISREGISTRATION = 4.0  # mm per axis and degrees in-plane, at most


@pytest.fixture(scope="module")
def misregistered(tmp_path_factory):
    """Two embedded subjects whose T2 is moved against their T1 (known rigid motion): 128^2 x 48
    slices of 1.64 x 1.64 x 2.5 mm over the whole brain (-40..80 mm). Over the default 80 mm slab
    the through-plane shift is weakly constrained (anatomy leaves the slab): up to 0.77 mm off,
    measured, with the rotation still within 0.2 degrees. Format 1's narrow variety (``classic``):
    with format 2's slab shift (+-8 mm) the top of the brain can leave even this slab, and with its
    per-contrast matrices and SNR down to 15 the same test measured 0.86 mm at worst (0.41 mean) for
    sub-000: the known answer is then less well posed, which is not what this test is about."""
    from robustmri.data.simulator import SynthConfig
    from robustmri.data.embedded import write_dataset

    config = SynthConfig.classic(size=128, n_slices=48, seed=3, contrasts=("t1", "t2"), misregistration_mm=MISREGISTRATION,
                         slab_mm=(-40.0, 80.0))
    root = write_dataset(tmp_path_factory.mktemp("reg") / "raw", 2, config)
    return root, config


def _true_motion(root, subject: str, config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, centre, t) of the simulated motion: the T2 at point x shows the anatomy at M (x - c) + c + t."""
    params = json.loads((root / subject / "params.json").read_text())["misregistration"]["t2"]
    centre = np.array([0.0, -18.0, 0.5 * (config.slab_mm[0] + config.slab_mm[1])])
    return rotation_matrix(np.array([0.0, 0.0, params["rotation_deg"]])), centre, np.array(params["translation_mm"])


@pytest.mark.parametrize("subject", ["sub-000", "sub-001"])
def test_rigid_registration_recovers_a_known_misregistration(misregistered, subject) -> None:
    from robustmri.data.readers import load_volume
    from robustmri.data.register import register_volume, rotation_angle_deg

    root, config = misregistered
    fixed, moving = load_volume(root / subject / "t1.nii.gz"), load_volume(root / subject / "t2.nii.gz")
    result = register_volume(fixed.data, fixed.affine, moving.data, moving.affine, "rigid", subject=subject)
    m, c, t = _true_motion(root, subject, config)
    assert rotation_angle_deg(np.eye(3)) == 0.0 and rotation_angle_deg(m) > 0.3  # a real motion to undo
    # registered T maps fixed -> moving points; the simulated motion maps moving -> anatomy: motion(T x) = x
    brain = np.argwhere(fixed.data > 0.1 * fixed.data.max())
    pts = (fixed.affine @ np.c_[brain, np.ones(len(brain))].T)[:3]  # (3, N) mm
    moved = result.matrix[:3, :3] @ pts + result.matrix[:3, 3:4]
    back = m @ (moved - c[:, None]) + c[:, None] + t[:, None]
    error_mm = np.linalg.norm(back - pts, axis=0)
    assert float(error_mm.max()) < 0.5, (float(error_mm.mean()), float(error_mm.max()))
    assert rotation_angle_deg(m @ result.matrix[:3, :3]) < 0.5
    assert result.metric_after < result.metric_before
    again = register_volume(fixed.data, fixed.affine, moving.data, moving.affine, "rigid", subject=subject)
    assert np.array_equal(again.matrix, result.matrix)  # one thread, seeded sampling: one answer


def test_prepare_register_saves_transforms_and_qc_montages(misregistered, tmp_path) -> None:
    from robustmri.data.prepare import prepare_dataset

    root, config = misregistered
    res = prepare_dataset(root, tmp_path / "prep", size=128, contrasts=["t1", "t2"], split=[1, 0, 1], register="rigid",
                          reference="t1")
    for subject in ("sub-000", "sub-001"):
        folder = res.entry / "registration" / subject
        saved = json.loads((folder / "t2.json").read_text())
        m, _, _ = _true_motion(root, subject, config)
        from robustmri.data.register import rotation_angle_deg

        assert abs(saved["rotation_deg"] - rotation_angle_deg(m)) < 0.5
        png = (folder / "t2-qc.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert set(res.meta["registered"]) == {"sub-000", "sub-001"}
    lines = [ln for ln in res.summary().splitlines() if ln.startswith("registered ")]
    assert len(lines) == 2 and all(" t2 -> t1: rigid, " in ln and "MI " in ln and "head Dice " in ln for ln in lines)
    onto = res.meta["registered"]["sub-000"]["t2"]["resampled_onto"]
    assert onto["interpolation"] == "linear" and len(onto["spacing_mm"]) == 3
    # registering is part of the cache key; without it the same folder is another entry
    plain = prepare_dataset(root, tmp_path / "prep", size=128, contrasts=["t1", "t2"], split=[1, 0, 1], reference="t1")
    assert plain.entry != res.entry and "registered" not in plain.meta


def test_failed_registrations_are_one_line_errors_naming_the_subject(misregistered) -> None:
    """A moving volume that shows another object (a ball of noise a fifth of the head's size) is
    refused by the head masks' overlap, with the numbers; an empty one by ITK's own failure."""
    from robustmri.data.readers import load_volume
    from robustmri.data.register import register_volume

    root, _ = misregistered
    fixed, moving = load_volume(root / "sub-000" / "t1.nii.gz"), load_volume(root / "sub-000" / "t2.nii.gz")
    rng = np.random.default_rng(0)
    grid = np.indices(moving.data.shape).astype(np.float64)
    centre = (np.array(moving.data.shape, dtype=np.float64) - 1)[:, None, None, None] / 2
    ball = (((grid - centre) / (0.1 * np.array(moving.data.shape))[:, None, None, None]) ** 2).sum(0) < 1
    other = np.where(ball, rng.uniform(0.2, 1.0, moving.data.shape), 0.0).astype(np.float32)
    with pytest.raises(DataError, match=r"subject ball: (after registration the head masks overlap by Dice|registration did not improve)")\
            as info:
        register_volume(fixed.data, fixed.affine, other, moving.affine, "rigid", subject="ball")
    assert "\n" not in str(info.value) and "MI " in str(info.value) and "head Dice" in str(info.value)
    with pytest.raises(DataError, match="subject empty: registration") as info:
        register_volume(fixed.data, fixed.affine, np.zeros_like(moving.data), moving.affine, "rigid", subject="empty")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- grids that share nothing


def _rigid(angles_deg: tuple[float, float, float], shift_mm: tuple[float, float, float], centre: np.ndarray) -> np.ndarray:
    """4x4 RAS rigid motion: rotation by ``angles_deg`` (x, y, z) about ``centre``, then ``shift_mm``."""
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(np.array(angles_deg))
    m[:3, 3] = centre - m[:3, :3] @ centre + np.array(shift_mm)
    return m


def _sample(data: np.ndarray, affine: np.ndarray, new_affine: np.ndarray, shape: tuple[int, ...], motion: np.ndarray) -> np.ndarray:
    """``data`` (on ``affine``) seen on a new grid: voxel v of the new grid shows the anatomy at
    world point ``motion @ (new_affine @ v)`` (linear interpolation, 0 outside)."""
    from scipy.ndimage import map_coordinates

    idx = np.indices(shape).reshape(len(shape), -1).astype(np.float64)
    idx = np.vstack([idx, np.zeros((3 - len(shape), idx.shape[1]))]) if len(shape) < 3 else idx
    world = motion @ new_affine @ np.vstack([idx, np.ones(idx.shape[1])])
    src = np.linalg.inv(affine) @ world
    out = map_coordinates(data, src[:3], order=1, mode="constant", cval=0.0)
    return out.reshape(shape).astype(np.float32)


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """One embedded subject, T1 and T2 aligned (no simulated misregistration), 128^2 x 70 slices of
    1.64 x 1.64 x 2.5 mm over the whole head (-75..100 mm), so a volume resampled from it shows no
    cut inside the head. (From a 120 mm slab the cut, moved with the anatomy, pulls an affine
    registration's scale by 2 % along one axis: 1.8 mm at worst over the brain, measured; rigid
    stays within 0.5 mm.)"""
    from robustmri.data.simulator import SynthConfig
    from robustmri.data.embedded import write_dataset
    from robustmri.data.readers import load_volume

    config = SynthConfig.classic(size=128, n_slices=70, seed=5, contrasts=("t1", "t2"), slab_mm=(-75.0, 100.0))
    root = write_dataset(tmp_path_factory.mktemp("aligned") / "raw", 1, config)
    return load_volume(root / "sub-000" / "t1.nii.gz"), load_volume(root / "sub-000" / "t2.nii.gz")


def _error_mm(result_matrix: np.ndarray, truth: np.ndarray, fixed) -> np.ndarray:  # noqa: ANN001
    brain = np.argwhere(fixed.data > 0.1 * fixed.data.max())
    pts = fixed.affine @ np.c_[brain, np.ones(len(brain))].T
    return np.linalg.norm((result_matrix @ pts)[:3] - (truth @ pts)[:3], axis=0)


@pytest.mark.parametrize("kind", ["rigid", "affine"])
def test_registration_recovers_a_sagittal_scan_on_another_grid_with_a_60_mm_origin_offset(aligned, kind) -> None:
    """IXI's situation, with a known answer: the T2 resampled onto a SAGITTAL grid (slices along
    left-right, 1.2 x 1.5 mm in plane, 2.0 mm thick, another matrix), its anatomy rotated by up to
    15 degrees and shifted by up to 20 mm, and its header's origin 60 mm away from where the
    anatomy is. The registration must find fixed point -> moving point = motion^-1(x) + 60 mm within
    1 mm over the brain (the former limits, measured from the headers, refused it)."""
    from robustmri.data.register import register_volume

    fixed, t2 = aligned
    centre = np.array([0.0, -18.0, 20.0])
    motion = _rigid((6.0, -4.0, 12.0), (8.0, -12.0, 10.0), centre)  # 13.9 degrees, 17.5 mm
    sagittal = np.array([[0.0, 0.0, 2.0, -90.0], [1.2, 0.0, 0.0, -130.0], [0.0, 1.5, 0.0, -60.0], [0.0, 0.0, 0.0, 1.0]])
    shape = (200, 110, 90)  # anterior 240 mm, superior 165 mm, right 180 mm
    moving = _sample(t2.data, t2.affine, sagittal, shape, motion)
    lie = np.array([36.0, -48.0, 0.0])  # 60 mm
    header = sagittal.copy()
    header[:3, 3] += lie
    truth = np.linalg.inv(motion)
    truth[:3, 3] += lie
    result = register_volume(fixed.data, fixed.affine, moving, header, kind, subject="sagittal")
    error = _error_mm(result.matrix, truth, fixed)
    assert float(error.max()) < 1.0, (float(error.mean()), float(error.max()))
    saved = result.to_json()
    assert saved["head_dice"] > 0.8 and saved["resampled_onto"]["interpolation"] == "linear"  # T1 and T2 masks differ: 0.87 measured
    assert saved["resampled_onto"]["spacing_mm"] == [round(float(v), 4) for v in np.linalg.norm(fixed.affine[:3, :3], axis=0)]
    assert result.data.shape == fixed.data.shape


def test_a_2d_pair_on_canvases_of_different_sizes_registers_in_plane(aligned) -> None:
    """The case a user met: one T2 slice rotated by 10 degrees and shifted, stored on a larger canvas
    (176^2 against 128^2) with identity-like headers; the anatomy's shift in the world is about 49
    mm. Recovered within 1 mm (registered in plane: 3 parameters), where the former header-based limit
    of 40 mm refused a correct 48.8 mm."""
    from robustmri.data.register import register_volume

    fixed3, t2 = aligned
    k = fixed3.data.shape[2] // 2 + 4
    spacing = float(np.linalg.norm(fixed3.affine[:3, 0]))
    flat = np.diag([spacing, spacing, 2.5, 1.0])  # identity directions, origin 0
    fixed = fixed3.data[:, :, k : k + 1]
    place = fixed3.affine.copy()
    place[:3, 3] += fixed3.affine[:3, 2] * k  # where slice k lies in the world
    centre = (place @ np.array([64.0, 64.0, 0.0, 1.0]))[:3]
    motion = _rigid((0.0, 0.0, 10.0), (6.0, -9.0, 0.0), centre)
    canvas = place.copy()
    canvas[:3, 3] -= np.array([24.0, 24.0, 0.0]) * spacing  # a 176^2 canvas around the same field
    moving = _sample(t2.data, t2.affine, canvas, (176, 176, 1), motion)
    # identity-like headers: both images' first voxel at the world origin, so voxel v is at flat @ v
    lie_f, lie_m = flat.copy(), flat.copy()
    to_place = place @ np.linalg.inv(flat)  # header world of the fixed -> true world
    from_canvas = flat @ np.linalg.inv(canvas)  # true world -> header world of the moving
    truth = from_canvas @ np.linalg.inv(motion) @ to_place  # fixed header point -> moving header point
    grid_centre = flat @ np.array([63.5, 63.5, 0.0, 1.0])
    assert float(np.linalg.norm((truth @ grid_centre - grid_centre)[:3])) > 40  # the case the former limit refused
    result = register_volume(fixed, lie_f, moving, lie_m, "rigid", subject="2d")
    brain = np.argwhere(fixed > 0.1 * fixed.max())
    pts = lie_f @ np.c_[brain, np.ones(len(brain))].T
    error = np.linalg.norm((result.matrix @ pts)[:2] - (truth @ pts)[:2], axis=0)
    assert float(error.max()) < 1.0, (float(error.mean()), float(error.max()))
    assert result.to_json()["in_plane"] is True
