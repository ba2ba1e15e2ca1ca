"""Training engine: pix2pix fidelity, learning, exact resume, checkpoints, DDP under torchrun, bad config."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from baselines.pix2pix import PatchDiscriminator, UnetGenerator
from robustmri.cli import main
from robustmri.data.embedded import embedded_slices
from robustmri.errors import ConfigError, DataError
from robustmri.models.base import count_parameters
from robustmri.models.registry import build_model
from robustmri.train.checkpoint import load_checkpoint
from robustmri.train.data import BatchOrder, PairedTensors
from robustmri.train.engine import TrainConfig, load_trained, train


def _pairs(n_subjects: int = 2, n_slices: int = 6, size: int = 64) -> PairedTensors:
    d = embedded_slices(n_subjects=n_subjects, size=size, n_slices=n_slices, seed=7, contrasts=("t1", "t2"))
    return PairedTensors(d["t1"], d["t2"], d["mask"], d["subject"], d["slice"])


def _masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.float()
    mse = ((pred - target) ** 2 * m).flatten(1).sum(1) / m.flatten(1).sum(1)
    return 10 * torch.log10(1.0 / mse)


def test_pix2pix_paper_parameter_counts_match_reference():
    # Reference (unet_256, ngf 64, n_layers_D 3, batch norm) prints 54.414 M / 2.769 M for RGB->RGB.
    g_rgb = UnetGenerator(3, 3, num_downs=8, ngf=64)
    assert count_parameters(g_rgb) == 54_413_955
    assert count_parameters(PatchDiscriminator(6, 64, 3)) == 2_768_705
    # robustmri's 1-channel MRI configuration at paper size
    model = build_model("pix2pix", size="paper", in_channels=1, image_size=256)
    assert count_parameters(model.generator) == 54_407_809
    assert count_parameters(model.discriminator) == 2_764_609


def test_batch_order_is_a_stateless_epoch_permutation():
    order = BatchOrder(10, 4, seed=3)
    first = torch.cat([order.indices(s) for s in range(5)])  # 20 samples = 2 epochs
    assert sorted(first[:10].tolist()) == list(range(10)) and sorted(first[10:].tolist()) == list(range(10))
    assert torch.equal(BatchOrder(10, 4, seed=3).indices(3), order.indices(3))
    r0, r1 = BatchOrder(10, 2, 3, rank=0, world_size=2), BatchOrder(10, 2, 3, rank=1, world_size=2)
    assert torch.equal(torch.cat([r0.indices(0), r1.indices(0)]), BatchOrder(10, 4, 3).indices(0))


def test_resumed_run_equals_uninterrupted(tmp_path):
    data = _pairs()
    cfg = dict(model="pix2pix", steps=8, batch_size=2, checkpoint_every=2, log_every=1, seed=5)
    full = train(TrainConfig(**cfg), data, tmp_path / "full", progress=False)
    part = train(TrainConfig(**cfg), data, tmp_path / "part", progress=False, stop_at=3)
    assert part.step == 3 and load_checkpoint(tmp_path / "part/checkpoints/last.pt")["step"] == 3
    resumed = train(TrainConfig(**cfg), data, tmp_path / "part", resume=True, progress=False)
    assert resumed.step == 8
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ca = load_checkpoint(tmp_path / "full/checkpoints/last.pt")
    cb = load_checkpoint(tmp_path / "part/checkpoints/last.pt")
    for name in ("D", "G"):
        sa, sb = ca["optimizers"][name]["state"], cb["optimizers"][name]["state"]
        assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    # the log has one line per step, none duplicated by the resume
    steps = [json.loads(line)["step"] for line in (tmp_path / "part/log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    # and a resumed run that differs from an uninterrupted one would be caught: another seed differs
    other = train(TrainConfig(**{**cfg, "seed": 6}), data, tmp_path / "other", progress=False)
    assert not torch.equal(other.model.state_dict()["generator.model.model.0.weight"], a["generator.model.model.0.weight"])


def test_resume_to_another_total_of_steps(tmp_path):
    data = _pairs(n_subjects=1, n_slices=4)
    # pix2pix with lr_policy="constant": continuing a 4-step run to 8 steps equals a run planned
    # for 8 steps (the batch order and RNG states are restored exactly)
    cfg = dict(model="pix2pix", steps=4, batch_size=2, checkpoint_every=2, seed=1, model_options={"lr_policy": "constant"})
    train(TrainConfig(**cfg), data, tmp_path / "p2p", progress=False)
    train(TrainConfig(**{**cfg, "steps": 8}), data, tmp_path / "p2p", resume=True, progress=False, stop_at=6)
    assert not (tmp_path / "p2p/summary.json").exists()  # killed on the way to 8: unfinished
    longer = train(TrainConfig(**{**cfg, "steps": 8}), data, tmp_path / "p2p", resume=True, progress=False)
    planned = train(TrainConfig(**{**cfg, "steps": 8}), data, tmp_path / "p2p8", progress=False)
    for k, v in planned.model.state_dict().items():
        assert torch.equal(v, longer.model.state_dict()[k]), k
    assert "extended_from" not in json.loads((tmp_path / "p2p/summary.json").read_text())
    with pytest.raises(ConfigError, match="already at step 8"):
        train(TrainConfig(**{**cfg, "steps": 6}), data, tmp_path / "p2p", resume=True, progress=False)

    # ResViT's learning rate decays over the second half of the planned total: another total is
    # refused, unless extended on purpose, and then recorded
    cfg = dict(model="resvit", steps=4, batch_size=2, checkpoint_every=2, seed=1)
    train(TrainConfig(**cfg), data, tmp_path / "rv", progress=False)
    with pytest.raises(ConfigError, match=r"planned for 4 steps.*--steps 4.*--extend"):
        train(TrainConfig(**{**cfg, "steps": 8}), data, tmp_path / "rv", resume=True, progress=False)
    assert json.loads((tmp_path / "rv/summary.json").read_text())["steps"] == 4  # untouched
    part = train(TrainConfig(**{**cfg, "steps": 8}), data, tmp_path / "rv", resume=True, extend=True, progress=False, stop_at=6)
    assert part.step == 6 and not (tmp_path / "rv/summary.json").exists()  # unfinished again
    done = train(TrainConfig(**{**cfg, "steps": 8}), data, tmp_path / "rv", resume=True, progress=False)  # after a kill
    summary = json.loads((tmp_path / "rv/summary.json").read_text())
    assert done.step == 8 and summary["steps"] == 8 and summary["extended_from"] == [4]
    planned = train(TrainConfig(**{**cfg, "steps": 8}), data, tmp_path / "rv8", progress=False)
    assert any(not torch.equal(v, done.model.state_dict()[k]) for k, v in planned.model.state_dict().items())


def test_pix2pix_decays_its_learning_rate_over_the_second_half_by_default(tmp_path):
    """pix2pix's reference ``--lr_policy linear``: 2e-4 for the first half, then linearly to 0."""
    data = _pairs(n_subjects=1, n_slices=4)
    train(TrainConfig(model="pix2pix", steps=8, batch_size=2, log_every=1), data, tmp_path / "run", progress=False)
    lrs = [json.loads(line)["lr"]["G"] for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([2e-4, 2e-4, 2e-4, 2e-4, 1.5e-4, 1e-4, 5e-5, 0.0])  # after steps 1..8


def test_a_checkpoint_of_another_model_definition_is_a_one_line_error(tmp_path):
    data = _pairs(n_subjects=1, n_slices=4)
    train(TrainConfig(model="diffusion", steps=1, batch_size=2), data, tmp_path / "run", progress=False)
    path = tmp_path / "run/checkpoints/last.pt"
    payload = torch.load(path, weights_only=True)
    payload["model"] = {k: v for k, v in payload["model"].items() if not k.startswith("ema_denoiser.")}  # an older layout
    torch.save(payload, path)
    with pytest.raises(DataError, match=r"run: its checkpoint does not fit .*ConditionalDiffusion.*train again") as err:
        load_trained(tmp_path / "run")
    assert "\n" not in str(err.value)


def test_checkpoint_loads_weights_only_and_corruption_is_reported(tmp_path):
    data = _pairs(n_subjects=1, n_slices=4)
    train(TrainConfig(model="pix2pix", steps=2, batch_size=2), data, tmp_path / "run", progress=False)
    path = tmp_path / "run/checkpoints/last.pt"
    payload = torch.load(path, weights_only=True)  # nothing but tensors and plain containers
    assert payload["step"] == 2 and "rng" in payload
    model, cfg = load_trained(tmp_path / "run")
    assert cfg.model == "pix2pix" and not model.training
    with pytest.raises(ConfigError, match="--resume"):
        train(TrainConfig(model="pix2pix", steps=2, batch_size=2), data, tmp_path / "run", progress=False)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="corrupt"):
        load_trained(tmp_path / "run")
    assert not list((tmp_path / "run/checkpoints").glob(".*"))  # no temporary files left behind


def test_resume_with_different_config_is_refused(tmp_path):
    data = _pairs(n_subjects=1, n_slices=4)
    train(TrainConfig(model="pix2pix", steps=2, batch_size=2), data, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        train(TrainConfig(model="pix2pix", steps=4, batch_size=3), data, tmp_path / "run", resume=True, progress=False)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"model": "nope"}, "unknown model"),
        ({"model": "pix2pix", "size": "huge"}, "unknown size"),
        ({"model": "pix2pix", "source": "t2", "target": "t2"}, "same contrast"),
        ({"model": "pix2pix", "source": "t7"}, "unknown contrast"),
        ({"model": "pix2pix", "steps": 0}, "--steps"),
    ],
)
def test_bad_train_config(tmp_path, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        cfg = TrainConfig(**kwargs)
        train(cfg, _pairs(n_subjects=1, n_slices=2), tmp_path / "run", progress=False)


def test_image_too_small_for_network_depth():
    with pytest.raises(ConfigError, match="image size"):
        build_model("pix2pix", size="tiny", image_size=16)
    with pytest.raises(ConfigError, match="image size"):
        build_model("pix2pix", size="paper", image_size=48)


def test_pix2pix_tiny_beats_copy_source(tmp_path):
    torch.set_num_threads(2)
    d = embedded_slices(n_subjects=5, size=64, n_slices=12, seed=1, contrasts=("t1", "t2"))
    train_rows, test_rows = d["subject"] < 4, d["subject"] == 4
    full = PairedTensors(d["t1"], d["t2"], d["mask"], d["subject"], d["slice"])
    result = train(
        TrainConfig(model="pix2pix", steps=150, batch_size=4, seed=0), full.subset(train_rows), tmp_path / "r", progress=False
    )
    test = full.subset(test_rows)
    with torch.no_grad():
        pred = result.model(test.source).clamp(0, 1)
    model_psnr = _masked_psnr(pred, test.target, test.mask).mean()
    copy_psnr = _masked_psnr(test.source, test.target, test.mask).mean()
    assert model_psnr > copy_psnr + 5.0, (float(model_psnr), float(copy_psnr))


def test_cli_train_bad_input(tmp_path, capsys):
    rc = main(["train", "--model", "nope", "--out", str(tmp_path / "r"), "--cache", str(tmp_path / "c")])
    assert rc == 2 and "unknown model 'nope'" in capsys.readouterr().err
    rc = main(["train", "--model", "pix2pix", "--source", "t1", "--target", "t1", "--out", str(tmp_path / "r")])
    assert rc == 2 and "same contrast" in capsys.readouterr().err
    rc = main(["train", "--model", "pix2pix", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "missing" in err and err.count("\n") == 1
    rc = main(["train", "--model", "pix2pix", "--extend", "--out", str(tmp_path / "r")])
    assert rc == 2 and "add --resume" in capsys.readouterr().err


def test_ddp_two_processes_gloo_keep_replicas_identical(tmp_path):
    env = {**os.environ, "ROBUSTMRI_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "robustmri", "train", "--model", "pix2pix", "--data", "embedded:3", "--image-size", "64",
        "--steps", "6", "--batch-size", "2", "--checkpoint-every", "3", "--out", str(tmp_path / "ddp"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "ddp/checkpoints/last.pt")
    assert ckpt["step"] == 6 and len(ckpt["rng"]) == 2  # one RNG state per process
    assert ckpt["rng"][0]["cpu"].ne(ckpt["rng"][1]["cpu"]).any()
    # the engine verified at the end that both replicas hold identical parameters (else exit != 0)
    log = [json.loads(x) for x in (tmp_path / "ddp/log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 6
    assert proc.stdout.count("trained pix2pix") == 1  # only rank 0 reports


FAILING_PLUGIN = '''
import os
from robustmri.models import register_model
from baselines.pix2pix import build as build_pix2pix


@register_model("fails_on_rank1")
def build(size="tiny", in_channels=1, image_size=64, **options):
    model = build_pix2pix(size, in_channels, image_size, **options)
    step = model.training_step
    calls = []

    def failing_step(batch, ctx):
        calls.append(1)
        if os.environ.get("RANK") == "1" and len(calls) == 3:
            raise RuntimeError("injected failure on rank 1")
        return step(batch, ctx)

    model.training_step = failing_step
    return model
'''


def test_ddp_failure_on_one_rank_ends_the_run_instead_of_hanging(tmp_path):
    # A process that fails mid-run must leave without waiting for its peers (which may never
    # arrive), so that torchrun sees the failure and stops the job.
    (tmp_path / "failing_plugin.py").write_text(FAILING_PLUGIN)
    env = {
        **os.environ, "ROBUSTMRI_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
        "ROBUSTMRI_PLUGINS": "failing_plugin", "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()]),
    }
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "robustmri", "train", "--model", "fails_on_rank1", "--data", "embedded:3", "--image-size", "64",
        "--steps", "6", "--batch-size", "2", "--out", str(tmp_path / "ddp"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)  # a hang fails here
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stderr
