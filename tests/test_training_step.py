"""A training step without host syncs, and the speed options that must not change what it computes.

Reading a value of a GPU tensor (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``,
``.cpu()``, ``.numpy()``) makes the host wait for the device. The tests count such reads on the
CPU, where they are cheap but the same calls: a model's ``training_step`` makes none, and the
engine makes at most one per log interval. Reads made inside torch itself are not counted (torch's
CPU Adam reads its step counter; on a GPU the engine uses the fused Adam, which does not).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robustmri.data.embedded import embedded_slices
from robustmri.train.accel import networks, use_channels_last
from robustmri.train.data import PairedTensors
from robustmri.train.engine import TrainConfig, train
from robustmri.train.losslog import LossLog
from conftest import ReadCounter


def _pairs(size: int = 64) -> PairedTensors:
    d = embedded_slices(n_subjects=2, size=size, n_slices=4, seed=3, contrasts=("t1", "t2"))
    return PairedTensors(d["t1"], d["t2"], d["mask"], d["subject"], d["slice"])


MODELS = [
    ("pix2pix", {}),
    ("resvit", {}),
    ("reggan", {}),
    ("diffusion", {}),
    ("kd_attack", {"generator": "pix2pix", "variant": "full", "schedule": [0.0, 0.0, 0.0]}),
    ("kd_attack", {"generator": "pix2pix", "variant": "g_pgd", "schedule": [0.0, 0.0, 0.0]}),
]


@pytest.mark.parametrize(("name", "options"), MODELS, ids=[f"{n}-{o.get('variant', '')}" for n, o in MODELS])
def test_a_models_training_step_reads_nothing_back(name, options, reads, tmp_path):
    from robustmri.models.registry import build_model
    from robustmri.train.context import SimpleStepContext

    data = _pairs()
    torch.manual_seed(0)
    model = build_model(name, size="tiny", image_size=64, **options)
    model.set_total_steps(10)
    ctx = SimpleStepContext.for_model(model, 10)
    model.train()
    batch = data.batch(torch.arange(4))
    before = reads.count
    for step in range(3):
        ctx.step = step
        losses = model.training_step(batch, ctx)
    assert reads.count == before, f"{name} read {reads.count - before} values back in 3 steps: {reads.where[before:][:5]}"
    assert losses and all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in losses.values())


def _train_reads(tmp_path: Path, reads: ReadCounter, steps: int, **options) -> tuple[int, list[dict]]:
    cfg = TrainConfig(model="pix2pix", steps=steps, batch_size=2, log_every=10, checkpoint_every=1000, seed=1, **options)
    out = tmp_path / f"run{steps}-{len(list(tmp_path.iterdir()))}"
    before = reads.count
    train(cfg, _pairs(), out, progress=False)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return reads.count - before, log


def test_the_engine_reads_losses_once_per_log_interval(tmp_path, reads):
    short, _ = _train_reads(tmp_path, reads, 20)
    long, log = _train_reads(tmp_path, reads, 40)
    # 20 more steps are 2 more log intervals: at most one read each (setup and the end cancel out)
    assert long - short <= 2, reads.where
    assert [r["step"] for r in log] == [10, 20, 30, 40]
    assert all(isinstance(r["loss_G_l1"], float) for r in log)


def test_a_non_finite_loss_between_log_steps_is_caught_at_the_next_read():
    log = LossLog(torch.device("cpu"))
    log.add({"a": torch.tensor(1.0)})
    log.add({"a": torch.tensor(float("nan"))})
    log.add({"a": torch.tensor(2.0)})  # finite again, but the interval had a NaN
    values, nonfinite = log.read()
    assert values == {"a": 2.0} and nonfinite
    log.add({"a": torch.tensor(3.0), "b": 0.5})
    assert log.read() == ({"a": 3.0, "b": 0.5}, False)


def test_the_engine_stops_on_a_non_finite_loss(tmp_path):
    data = _pairs()
    data = PairedTensors(data.source * float("nan"), data.target, data.mask, data.subject, data.slice)
    with pytest.raises(FloatingPointError, match=r"non-finite loss in steps 1\.\.10"):
        train(TrainConfig(model="pix2pix", steps=20, batch_size=2, log_every=10, seed=1), data, tmp_path / "nan", progress=False)


def test_channels_last_gives_the_same_losses(tmp_path):
    assert use_channels_last("auto", torch.device("cpu")) is False
    assert use_channels_last("auto", torch.device("cuda")) is True
    cfg = dict(model="pix2pix", steps=6, batch_size=2, log_every=1, seed=2)
    a = train(TrainConfig(**cfg), _pairs(), tmp_path / "nchw", progress=False)
    b = train(TrainConfig(**cfg, channels_last="on"), _pairs(), tmp_path / "nhwc", progress=False)
    for la, lb in zip(_log(a.run_dir), _log(b.run_dir), strict=True):
        for key in ("loss_D", "loss_G_gan", "loss_G_l1"):
            assert la[key] == pytest.approx(lb[key], rel=1e-3, abs=1e-5)
    assert a.run_dir != b.run_dir


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_networks_finds_every_network_once():
    from robustmri.models.registry import build_model

    kd = build_model("kd_attack", size="tiny", image_size=64)
    nets = networks(kd)
    names = {type(n).__name__ for n in nets}
    assert {"UnetGenerator", "PatchDiscriminator", "RefinementNet"} <= names
    total = sum(p.numel() for n in nets for p in n.parameters())
    assert total == sum(p.numel() for p in kd.parameters())


def test_compiled_training_gives_the_same_losses_and_checkpoints(tmp_path):
    """torch.compile (TorchInductor, C++ on the CPU) against eager: the same losses over a few
    steps to float precision, and a checkpoint an eager model loads."""
    from robustmri.train.engine import load_trained

    cfg = dict(model="pix2pix", steps=4, batch_size=2, log_every=1, seed=2)
    eager = train(TrainConfig(**cfg), _pairs(), tmp_path / "eager", progress=False)
    compiled = train(TrainConfig(**cfg, compile=True), _pairs(), tmp_path / "compiled", progress=False)
    for la, lb in zip(_log(eager.run_dir), _log(compiled.run_dir), strict=True):
        for key in ("loss_D", "loss_G_gan", "loss_G_l1"):
            assert la[key] == pytest.approx(lb[key], rel=1e-3, abs=1e-5), (la["step"], key)
    model, _ = load_trained(compiled.run_dir)
    x = _pairs().source[:2]
    with torch.no_grad():
        torch.testing.assert_close(model.translate(x), eager.model.translate(x), rtol=0, atol=1e-3)
