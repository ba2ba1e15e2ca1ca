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
    """Stage 2 (after the CNN-only first half): every part trains, transformers included."""
    torch.manual_seed(0)
    m = build("tiny", image_size=64)
    m.set_total_steps(10)
    ctx = SimpleStepContext.for_model(m, total_steps=10)
    ctx.step = 5
    batch = {"source": torch.rand(2, 1, 64, 64), "target": torch.rand(2, 1, 64, 64), "mask": torch.ones(2, 1, 64, 64, dtype=torch.bool)}
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    logs = m.training_step(batch, ctx)
    assert set(logs) == {"loss_D", "loss_G_gan", "loss_G_l1"}
    for prefix in ("generator.encoder.", "generator.transformers.", "generator.art.0.position_embedding", "discriminator."):
        changed = [n for n, p in m.named_parameters() if n.startswith(prefix) and not torch.equal(p, before[n])]
        assert changed, f"no parameter of {prefix} changed"


def test_the_first_stage_is_the_cnn_only_network_and_inference_is_the_full_model() -> None:
    torch.manual_seed(0)
    m = build("tiny", image_size=64)
    m.set_total_steps(10)
    ctx = SimpleStepContext.for_model(m, total_steps=10)
    ctx.step = 4  # < 0.5 * 10: stage 1 (res_cnn)
    batch = {"source": torch.rand(2, 1, 64, 64), "target": torch.rand(2, 1, 64, 64), "mask": torch.ones(2, 1, 64, 64, dtype=torch.bool)}
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    m.training_step(batch, ctx)
    parts = ("transformers.", ".downsample.", ".patch_embedding.", ".position_embedding", ".upsample.", ".compression.")
    for n, p in m.named_parameters():
        moved = not torch.equal(p, before[n])
        assert moved != any(part in n for part in parts), n  # the transformer path is untouched, the rest trains
    assert m.generator.cnn_only is False  # reset after the step: inference runs the full model
    m.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        full = m.translate(x)
        m.generator.cnn_only = True
        cnn = m.translate(x)
    assert float((full - cnn).abs().max()) > 1e-4
    with pytest.raises(ConfigError, match="cnn_pretrain"):
        build("tiny", cnn_pretrain=1.0)


def _to_npz(encoder: TransformerEncoder) -> dict:
    """The inverse of the loader's mapping: an encoder written in Google's ViT .npz layout."""
    import numpy as np

    hidden = encoder.norm.normalized_shape[0]
    heads = encoder.layers[0].attention.heads
    out = {}
    for i, layer in enumerate(encoder.layers):
        root = f"Transformer/encoderblock_{i}/"
        att = root + "MultiHeadDotProductAttention_1/"
        for name in ("query", "key", "value"):
            lin = getattr(layer.attention, name)
            out[att + f"{name}/kernel"] = lin.weight.detach().T.reshape(hidden, heads, hidden // heads).numpy()
            out[att + f"{name}/bias"] = lin.bias.detach().reshape(heads, hidden // heads).numpy()
        out[att + "out/kernel"] = layer.attention.out.weight.detach().T.reshape(heads, hidden // heads, hidden).numpy()
        out[att + "out/bias"] = layer.attention.out.bias.detach().numpy()
        out[root + "LayerNorm_0/scale"] = layer.attention_norm.weight.detach().numpy()
        out[root + "LayerNorm_0/bias"] = layer.attention_norm.bias.detach().numpy()
        out[root + "LayerNorm_2/scale"] = layer.mlp_norm.weight.detach().numpy()
        out[root + "LayerNorm_2/bias"] = layer.mlp_norm.bias.detach().numpy()
        out[root + "MlpBlock_3/Dense_0/kernel"] = layer.mlp[0].weight.detach().T.numpy()
        out[root + "MlpBlock_3/Dense_0/bias"] = layer.mlp[0].bias.detach().numpy()
        out[root + "MlpBlock_3/Dense_1/kernel"] = layer.mlp[3].weight.detach().T.numpy()
        out[root + "MlpBlock_3/Dense_1/bias"] = layer.mlp[3].bias.detach().numpy()
    out["Transformer/encoder_norm/scale"] = encoder.norm.weight.detach().numpy()
    out["Transformer/encoder_norm/bias"] = encoder.norm.bias.detach().numpy()
    out["embedding/kernel"] = np.zeros((16, 16, 3, hidden), dtype="float32")  # ignored, as in ResViT's loader
    return out


def test_vit_weights_load_from_a_local_npz_and_torch_file(tmp_path) -> None:
    import numpy as np

    torch.manual_seed(0)
    src = TransformerEncoder(64, 2, 4, 128, dropout=0.0)
    for p in src.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    np.savez(tmp_path / "vit.npz", **_to_npz(src))
    m = build("tiny", image_size=64, vit_weights=str(tmp_path / "vit.npz"))
    enc = m.generator.transformers[0].eval()
    tokens = torch.randn(2, 16, 64)
    with torch.no_grad():
        assert torch.allclose(enc(tokens), src.eval()(tokens), atol=1e-5)  # same function, not just same shapes
    torch.save(src.state_dict(), tmp_path / "vit.pt")
    m2 = build("tiny", image_size=64, vit_weights=str(tmp_path / "vit.pt"))
    assert torch.equal(m2.generator.transformers[0].norm.weight, src.norm.weight)
    with pytest.raises(ConfigError, match="does not exist"):
        build("tiny", image_size=64, vit_weights=str(tmp_path / "none.npz"))
    with pytest.raises(ConfigError, match="does not fit"):  # ViT-B into the tiny encoder
        np.savez(tmp_path / "big.npz", **_to_npz(TransformerEncoder(128, 2, 4, 256)))
        build("tiny", image_size=64, vit_weights=str(tmp_path / "big.npz"))
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ConfigError, match="lacks"):
        build("tiny", image_size=64, vit_weights=str(tmp_path / "other.npz"))


# --- slow: learns t1 -> t2 on the embedded data -------------------------------------------------
@pytest.mark.slow
def test_tiny_resvit_beats_copying_the_source() -> None:
    torch.manual_seed(0)
    model = build("tiny", image_size=64)
    psnr, copy_psnr, seconds = train_and_score(model, steps=400)
    print(f"resvit tiny: PSNR {psnr:.2f} dB vs copy-source {copy_psnr:.2f} dB in {seconds:.0f} s")
    assert psnr > copy_psnr + 5.0
