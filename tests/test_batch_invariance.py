"""Scores do not depend on the evaluation batch: keyed random streams (robustmri.rng) and the
scoring loop that keys them by (seed, perturbation, subject, slice).

Float tolerance, measured (2-core AMD EPYC, CPU torch 2.13.0): the per-slice scores of an untrained
tiny pix2pix differ by at most 5.6e-6 dB (stability PSNR) between batch sizes 1 and 7 in the test
below, and by at most 3.5e-5 dB over every registered perturbation at severity 3 on 12 slices
(pgd_l2 after 3 steps): oneDNN picks its convolution kernels by batch size, so a network's output
moves in the last float bits. A tiny diffusion model (stochastic, DDIM) is byte-identical. The test allows
2e-4 dB / 2e-6 (SSIM, MAE, NMSE): about six times the measured spread, and a hundred times below
the drift check's smallest tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from robustmri.bench.scoring import EvalSettings, score_cell
from robustmri.bench.plan import CLEAN_CELL, Cell
from robustmri.data.paired import PairedTensors
from robustmri.errors import ConfigError, DataError
from robustmri.models.registry import build_model
from robustmri.perturb import PERTURBATIONS, get_perturbation, list_perturbations
from robustmri.protocol import get_protocol
from robustmri.rng import KeyedStream, splitmix64_reference

PSNR_TOL = 2e-4  # dB
UNIT_TOL = 2e-6  # SSIM, MAE, NMSE


# ------------------------------------------------------------------------------------------------
# the keyed streams themselves


def test_splitmix64_known_answers():
    # SplitMix64 seeded with 1234567, first outputs (the reference sequence of Vigna's splitmix64.c)
    expected = [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
                16408922859458223821]
    assert [splitmix64_reference(1234567, j) for j in range(5)] == expected
    bits = KeyedStream([1234567]).bits(5)[0]
    assert [int(v) & ((1 << 64) - 1) for v in bits] == expected


def test_tensor_streams_equal_the_python_definition_for_keys_across_the_64_bit_range():
    keys = [0, 1, 2**31 + 7, 2**62 + 3, 2**63 - 1, 2**63, 2**64 - 1]
    got = KeyedStream(keys).bits(9)
    for r, k in enumerate(keys):
        assert [int(v) & ((1 << 64) - 1) for v in got[r]] == [splitmix64_reference(k, j) for j in range(9)]


def test_uniform_and_normal_draws_have_their_distribution():
    s = KeyedStream(list(range(200)))
    u = s.uniform((200, 500)).flatten().double().numpy()
    z = s.normal((200, 500)).flatten().double().numpy()
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # neighbouring keys are not correlated
    a, b = KeyedStream([5]).normal((1, 20000))[0], KeyedStream([6]).normal((1, 20000))[0]
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.03


def test_a_row_draws_the_same_numbers_alone_or_anywhere_in_a_batch():
    alone = KeyedStream([42])
    batch = KeyedStream([7, 9, 42, 11])
    for shape in ((1, 3), (1, 1, 4, 4), (1,)):
        a = alone.uniform(shape)
        b = batch.uniform((4, *shape[1:]))
        assert torch.equal(a[0], b[2])
    assert torch.equal(alone.normal((1, 5))[0], batch.normal((4, 5))[2])
    assert torch.equal(alone.spawn().keys, batch.spawn().keys[2:3])


def test_a_stream_refuses_a_shape_that_is_not_one_row_per_key():
    with pytest.raises(DataError, match="first dimension must be 3"):
        KeyedStream([1, 2, 3]).uniform((4, 2))


@pytest.mark.parametrize("name", list_perturbations(include_adversarial=False))
def test_every_corruption_gives_an_image_the_same_draw_in_any_batch(name):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 32, 32, generator=g)
    keys = [101, 102, 103, 104, 105]
    p = get_perturbation(name)
    spacing = torch.full((5,), 2.0, dtype=torch.float64)
    whole = p(x, 4, generator=KeyedStream(keys), spacing_mm=spacing)
    for i in (0, 3):
        one = p(x[i : i + 1], 4, generator=KeyedStream(keys[i : i + 1]), spacing_mm=spacing[i : i + 1])
        torch.testing.assert_close(one[0], whole[i], rtol=0, atol=1e-6)
    if p.stochastic:  # the keys matter: another key, another draw
        other = p(x[:1], 4, generator=KeyedStream([999]), spacing_mm=spacing[:1])
        assert not torch.equal(other[0], whole[0])


# ------------------------------------------------------------------------------------------------
# the scoring loop at several batch sizes


def _data(n: int, size: int = 32) -> PairedTensors:
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.38 * size) ** 2
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 5, 1, 2)
    src = (smooth * disk).float()
    tgt = (1.0 - smooth) * disk
    mask = disk[None, None].expand(n, 1, size, size).clone()
    subjects = torch.arange(n) // 10
    slices = torch.arange(n) % 10
    return PairedTensors(src, tgt, mask, subjects, slices, None, torch.full((n,), 210.0 / size, dtype=torch.float64))


BUDGET = {"pgd_linf": {"steps": 3, "restarts": 2}, "square_linf": {"queries": 15}, "fgsm_linf": {}}


def _scores(model, data, cells, batch_size: int) -> pd.DataFrame:
    settings = EvalSettings(get_protocol("robustmri"), seed=4, batch_size=batch_size,
                            attack_budget={k: v for k, v in BUDGET.items() if v}, eot_samples=2)
    frames = []
    cache: dict = {}
    for cell in cells:
        frame = score_cell(model, data, cell, settings, clean_cache=cache).frame
        frame.insert(0, "cell", f"{cell.perturbation}/{cell.severity}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, exact: bool = False) -> None:
    assert list(a.columns) == list(b.columns)
    assert a[["cell", "subject", "slice"]].equals(b[["cell", "subject", "slice"]])
    for col in a.columns:
        if col in ("cell", "subject", "slice", "protocol"):
            assert a[col].equals(b[col]), col
            continue
        x, y = a[col].to_numpy(float), b[col].to_numpy(float)
        assert np.array_equal(np.isnan(x), np.isnan(y)), col
        tol = 0.0 if exact else (PSNR_TOL if "psnr" in col else UNIT_TOL)
        diff = np.nanmax(np.abs(x - y)) if np.isfinite(x).any() else 0.0
        assert diff <= tol, f"{col}: scores differ by {diff:.3g} between batch sizes (tolerance {tol:g})"


def _cells(*names: str, severity: int = 3) -> list[Cell]:
    return [CLEAN_CELL] + [Cell(n, PERTURBATIONS[n].family, severity) for n in names]


def test_pix2pix_scores_are_the_same_at_batch_sizes_1_7_32_and_128():
    torch.manual_seed(0)
    model = build_model("pix2pix", size="tiny", image_size=64).eval()
    data = _data(40, 64)
    cells = _cells("gaussian_noise", "motion", "undersampling", "random_linf", "fgsm_linf", "pgd_linf", "square_linf")
    base = _scores(model, data, cells, 1)
    for bs in (7, 32, 128):
        _assert_same(base, _scores(model, data, cells, bs))
    # the draws are real: another seed moves the noisy cell, not the clean one
    other = EvalSettings(get_protocol("robustmri"), seed=5, batch_size=7)
    moved = score_cell(model, data, cells[1], other).frame
    assert not np.allclose(moved["psnr"], base[base["cell"] == "gaussian_noise/3"]["psnr"])


def test_a_stochastic_models_scores_and_attacks_are_the_same_at_any_batch_size():
    torch.manual_seed(0)
    model = build_model("diffusion", size="tiny", image_size=32, sample_steps=3, samples=1).eval()
    assert model.stochastic
    data = _data(9)
    cells = _cells("rician_noise", "square_linf", "fgsm_linf", severity=4)
    base = _scores(model, data, cells, 1)
    _assert_same(base, _scores(model, data, cells, 4), exact=True)
    _assert_same(base, _scores(model, data, cells, 32), exact=True)
    # and the model's own noise is drawn per slice: two slices with equal inputs differ
    same = PairedTensors(data.source[:1].repeat(2, 1, 1, 1), data.target[:1].repeat(2, 1, 1, 1),
                         data.mask[:1].repeat(2, 1, 1, 1), torch.tensor([0, 0]), torch.tensor([0, 1]))
    out = score_cell(model, same, CLEAN_CELL, EvalSettings(get_protocol("robustmri"), batch_size=2), keep=True)
    assert out.predictions is not None and not torch.equal(out.predictions[0], out.predictions[1])
    assert math.isfinite(float(base["psnr"].mean()))


# ------------------------------------------------------------------------------------------------
# the scoring loop reads back one tensor per batch


ID_READS = ("paired.py", "scoring.py")
"""Sites that read CPU-held slice ids (PairedTensors keeps subject and slice numbers on the CPU)."""
CPU_ONLY_READS = ("base.py", "image.py", "metrics.py", "kspace.py")
"""Reads of values that live on the CPU: the pixel spacing (check_spacing moves it there by contract)
and the per-image kernel widths made from it (image.py groups images by width: kernel shapes are
host values); and checks that read only on the CPU: a data range (_range_tensor), a spike's minimum
(both tested below on another device)."""


def test_the_scoring_loop_reads_back_one_tensor_per_batch(reads):
    """Per batch, whatever the perturbation: one read of scores computed on the device (the stacked
    metric and stability rows, protocol.rule.to_host); every other read is of CPU-held ids or of a
    check that reads only CPU values."""
    from collections import Counter

    torch.manual_seed(0)
    model = build_model("pix2pix", size="tiny", image_size=64).eval()
    data = _data(20, 64)
    settings = EvalSettings(get_protocol("robustmri"), seed=4, batch_size=8,
                            attack_budget={k: v for k, v in BUDGET.items() if v})
    cache: dict = {}
    n_batches = 3
    for cell in _cells(*sorted(PERTURBATIONS)):
        before = reads.count
        score_cell(model, data, cell, settings, clean_cache=cache)
        # .numpy() of what .cpu() returned is no second read (on a GPU tensor it would raise)
        sites = Counter(w.split(" at ")[1].split(":")[0] for w in reads.where[before:] if not w.startswith("numpy"))
        device_reads = {s: n for s, n in sites.items() if s not in ID_READS + CPU_ONLY_READS}
        assert device_reads == {"rule.py": n_batches}, f"{cell.perturbation}: {reads.where[before:]}"


def test_the_cpu_only_checks_read_nothing_from_another_device():
    """On a device other than the CPU (here 'meta', where any read would raise), a data range is
    not checked on the host and a spike chooses its peak per image."""
    from robustmri import metrics
    from robustmri.perturb.kspace import spike

    r = metrics._range_tensor(torch.ones(3, device="meta"), 3, torch.device("meta"))
    assert r.device.type == "meta" and r.shape == (3,)
    u = torch.ones(2, 1, 8, 8, device="meta")
    assert spike(u, torch.full((2, 1, 2), 0.25, device="meta"), 0.5).shape == u.shape
    # and on the CPU the range is still checked, the spike per image the same as alone
    with pytest.raises(ConfigError, match="finite and > 0"):
        metrics._range_tensor(torch.tensor([1.0, 0.0]), 2, torch.device("cpu"))
    x = torch.rand(2, 1, 8, 8)
    x[1] -= 0.5  # one image with negative values: the other keeps its own rule
    pos = torch.full((2, 1, 2), 0.25)
    both = spike(x, pos, 0.5)
    assert torch.allclose(both[0], spike(x[:1], pos[:1], 0.5)[0], atol=1e-6)
    assert torch.allclose(both[1], spike(x[1:], pos[1:], 0.5)[0], atol=1e-6)
