"""ResViT-like baseline: exact parameter counts, transformer weight sharing, shapes and range, a
training step, bad sizes, and (slow) a short training run that beats copying the source."""

from __future__ import annotations

import pytest
import torch

from baselines.resvit import PRESETS, ResViT, TransformerEncoder, build
from robustmri.errors import ConfigError
from robustmri.models.base import count_parameters
from robustmri.models.registry import build_model
from robustmri.train.context import SimpleStepContext

from learning import train_and_score



pytestmark = pytest.mark.usefixtures("two_threads")  # at most 2 intra-op threads, restored after


def _bn_conv(cin: int, cout: int, k: int) -> int:  # conv without bias + BatchNorm (weight, bias)
    return cin * cout * k * k + 2 * cout


def _encoder_layers(h: int, layers: int, mlp: int) -> int:
    per_layer = 4 * (h * h + h) + 2 * (2 * h) + (h * mlp + mlp) + (mlp * h + h)
    return layers * per_layer + 2 * h


def _generator_params(cin: int, image: int, ngf: int, n_art: int, transformer_blocks: tuple[int, ...], hidden: int,
                      vit_layers: int, mlp_dim: int, vit_channels: int, shared: bool = True, **_: object) -> int:
    g, d = ngf, 4 * ngf
    encoder = _bn_conv(cin, g, 7) + _bn_conv(g, 2 * g, 3) + _bn_conv(2 * g, d, 3)
    residual = 2 * _bn_conv(d, d, 3)
    transformer_path = (
        _bn_conv(d, 2 * d, 3) + _bn_conv(2 * d, vit_channels, 3)  # downsampling
        + vit_channels * hidden + hidden + (image // 16) ** 2 * hidden  # patch + position embedding
        + _bn_conv(hidden, 2 * d, 3) + _bn_conv(2 * d, d, 3)  # upsampling
        + _bn_conv(2 * d, d, 3) + _bn_conv(d, d, 3) + _bn_conv(2 * d, d, 1)  # channel compression
    )
    n_enc = 1 if shared else len(transformer_blocks)
    decoder = _bn_conv(d, 2 * g, 3) + _bn_conv(2 * g, g, 3) + g * 49 + 1
    return (encoder + n_art * residual + len(transformer_blocks) * transformer_path
            + n_enc * _encoder_layers(hidden, vit_layers, mlp_dim) + decoder)


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_parameter_counts_match_the_architecture(size: str) -> None:
    m = build(size, in_channels=1, image_size=64)
    assert count_parameters(m.generator) == _generator_params(1, 64, **PRESETS[size])  # type: ignore[arg-type]


def test_paper_preset_parameter_count_at_256() -> None:
    m = build("paper", in_channels=1, image_size=256)
    expected = _generator_params(1, 256, **PRESETS["paper"])  # type: ignore[arg-type]
    assert count_parameters(m.generator) == expected == 123_441_537
    # the shared ViT-B encoder (12 layers of 768) is counted once: 85,056,000 parameters
    assert count_parameters(m.generator.transformers) == _encoder_layers(768, 12, 3072) == 85_056_000
    assert count_parameters(m.discriminator) == 2_764_609  # pix2pix 70x70 PatchGAN on 2 channels


def test_transformer_weight_sharing() -> None:
    shared = build("tiny", image_size=64)
    separate = build("tiny", image_size=64, share_transformer=False)
    assert len(shared.generator.transformers) == 1 and len(separate.generator.transformers) == 2
    one = count_parameters(shared.generator.transformers[0])
    assert count_parameters(separate.generator) - count_parameters(shared.generator) == one
    # both transformer blocks of the shared model call the same encoder object
    calls: list[int] = []
    enc = shared.generator.transformers[0]
    assert isinstance(enc, TransformerEncoder)
    handle = enc.register_forward_hook(lambda mod, inp, out: calls.append(id(mod)))
    with torch.no_grad():
        shared.eval().translate(torch.rand(1, 1, 64, 64))
    handle.remove()
    assert calls == [id(enc), id(enc)]


def test_every_preset_builds_at_64_and_forward_keeps_shape_and_range() -> None:
    torch.manual_seed(0)
    for size in ("tiny", "small"):
        m = build_model("resvit", size=size, in_channels=2, image_size=64).eval()
        with torch.no_grad():
            y = m.translate(torch.rand(2, 2, 64, 64))
        assert y.shape == (2, 1, 64, 64)
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    paper = build_model("resvit", size="paper", image_size=64)
    assert isinstance(paper, ResViT) and paper.generator.art[0].position_embedding.shape == (1, 16, 768)
    assert list(paper.inference_modules()) == [paper.generator]


@pytest.mark.parametrize("image", [40, 16, 0])
def test_bad_image_size_is_a_one_line_config_error(image: int) -> None:
    with pytest.raises(ConfigError) as err:
        build("tiny", image_size=image)
    assert "\n" not in str(err.value) and str(image) in str(err.value)


def test_bad_transformer_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="heads"):
        build("tiny", heads=3)
    with pytest.raises(ConfigError, match="transformer_blocks"):
        build("tiny", transformer_blocks=(0, 7))


def test_training_step_updates_generator_and_discriminator() -> None:
    torch.manual_seed(0)
    m = build("tiny", image_size=64)
    ctx = SimpleStepContext.for_model(m, total_steps=10)
    batch = {"source": torch.rand(2, 1, 64, 64), "target": torch.rand(2, 1, 64, 64), "mask": torch.ones(2, 1, 64, 64, dtype=torch.bool)}
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    logs = m.training_step(batch, ctx)
    assert set(logs) == {"loss_D", "loss_G_gan", "loss_G_l1"}
    for prefix in ("generator.encoder.", "generator.transformers.", "generator.art.0.position_embedding", "discriminator."):
        changed = [n for n, p in m.named_parameters() if n.startswith(prefix) and not torch.equal(p, before[n])]
        assert changed, f"no parameter of {prefix} changed"


# --- slow: learns t1 -> t2 on the embedded data -------------------------------------------------
@pytest.mark.slow
def test_tiny_resvit_beats_copying_the_source() -> None:
    torch.manual_seed(0)
    model = build("tiny", image_size=64)
    psnr, copy_psnr, seconds = train_and_score(model, steps=400)
    print(f"resvit tiny: PSNR {psnr:.2f} dB vs copy-source {copy_psnr:.2f} dB in {seconds:.0f} s")
    assert psnr > copy_psnr + 5.0
