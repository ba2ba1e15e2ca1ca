"""ResViT-like generator (Dalmaz, Yurt & Cukur, IEEE TMI 2022, "ResViT: Residual vision transformers
for multi-modal medical image synthesis") + conditional PatchGAN, LSGAN + 100 * L1.

Written from the paper and the public code (icon-lab/ResViT: models/residual_transformers.py
``ResViT``, ``ART_block``, ``Embeddings``, ``Encoder``, ``channel_compression``;
models/transformer_configs.py ``get_resvit_b16_config``; models/resvit_one.py; README commands):

- CNN encoder: reflect-pad 7x7 conv (ngf) + two stride-2 3x3 convs (2 ngf, 4 ngf); BatchNorm,
  ReLU, convolutions without bias. Decoder: two stride-2 3x3 transposed convs + 7x7 conv, Tanh.
- Bottleneck: ``n_art`` aggregated residual transformer (ART) blocks at H/4 x W/4 with 4 ngf
  channels. An ART block with a transformer: two stride-2 3x3 convs (4 ngf -> 8 ngf ->
  ``vit_channels``, 1024 in the paper) down to H/16 x W/16; a 1x1 patch embedding to ``hidden``
  (one token per position, 256 tokens at 256^2) + learned position embeddings (zero-initialised) +
  dropout; a pre-norm ViT encoder (``vit_layers`` x [LayerNorm, multi-head self-attention,
  residual, LayerNorm, MLP with GELU, residual], final LayerNorm); two stride-2 transposed convs
  back to 4 ngf at H/4; concatenation with the block's input; channel compression (a residual
  block 8 ngf -> 4 ngf with a 1x1 projection skip, BatchNorm, ReLU); then a residual CNN block
  (two 3x3 convs with BatchNorm, reflection padding). ART blocks without a transformer are only
  the residual CNN block.
- Weight sharing as in their code: the paper configuration has 9 ART blocks with transformers in
  blocks 1 and 6 (indices 0 and 5) that share ONE transformer encoder (same ``Encoder`` object in
  ``ResViT.__init__``); each of the two blocks keeps its own downsampling, patch/position
  embedding, upsampling and channel compression. ``share_transformer=False`` gives each block
  its own encoder.
- Transformer (ViT-B/16 sizes, ``Res-ViT-B_16``): hidden 768, 12 layers, 12 heads, MLP 3072,
  dropout 0.1 (embeddings and MLP), attention dropout 0, LayerNorm eps 1e-6.
- Discriminator: pix2pix's conditional PatchGAN on cat(source, target) (n_layers 3, BatchNorm).
- Losses (their README commands: ``--lambda_A 100`` and LSGAN since ``--no_lsgan`` is absent;
  ``lambda_adv`` 1): G: LSGAN(D(x, G(x)), 1) + 100 * L1(G(x), y); D: 0.5 * (LSGAN(real, 1) +
  LSGAN(fake, 0)). Adam betas (0.5, 0.999), lr 2e-4, constant then linear decay ("linear_decay").
  Weights ~ N(0, 0.02) (their ``init_type normal``), LayerNorm (1, 0), position embeddings 0.

Differences from the paper, to know when comparing numbers:
- No ImageNet weights can be fetched here, so by default the transformer is trained from scratch;
  the paper initialises it from ViT-B/16 (ImageNet-21k, ``R50+ViT-B_16.npz``). A user who has that
  file passes ``vit_weights=PATH`` (:func:`load_vit_weights`: Google's ``.npz`` layout, or a torch
  state dict of the encoder read with ``weights_only=True``); never downloaded.
- Two stages as their recipe (CNN-only ``res_cnn`` first, then ResViT from it): for the first
  ``cnn_pretrain`` fraction of the steps (default 0.5) every ART block skips its transformer path
  (the ``res_cnn`` network), then the full model trains. Differences: one optimiser and one
  learning-rate schedule span both stages (their fine-tuning restarts Adam at lr 1e-3 with its own
  decay); ``cnn_pretrain=0`` trains the full model from the start.
- The patch embedding is a 1x1 convolution on the H/16 grid for every image size (their code
  computes a patch size ``img_size // 16 // 16`` that is 1 at 256^2 and breaks below); the
  position embedding therefore has (image_size / 16)^2 tokens.
- ``paper`` at 256^2 reproduces their generator's layer shapes one for one (checked by reading
  their code, not by running it), so its parameter count should equal theirs: 123,441,537 for one
  input channel, of which 85,056,000 in the one shared ViT-B encoder (see the tests).

Size presets: ``paper`` = ngf 64, 9 ART blocks with shared transformers in blocks 1 and 6, ViT-B
(768, 12 layers, 12 heads, MLP 3072), ``vit_channels`` 1024, ndf 64; ``small`` = ngf 32, 9 blocks
(1 and 6), hidden 256, 4 layers, 8 heads, MLP 1024, ``vit_channels`` 512, ndf 32; ``tiny`` = ngf 16,
4 blocks (1 and 3, shared), hidden 64, 2 layers, 4 heads, MLP 128, ``vit_channels`` 128, ndf 16,
discriminator n_layers 2. Image sizes: multiples of 16, >= 32.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.layers import ResnetBlock, check_image_size, lsgan_loss
from baselines.pix2pix import PatchDiscriminator
from robustmri.errors import ConfigError
from robustmri.models.base import Batch, OptimizerSpec, SignedGeneratorModel, StepContext, init_normal, to_signed

PRESETS: dict[str, dict[str, object]] = {
    "tiny": {
        "ngf": 16,
        "n_art": 4,
        "transformer_blocks": (0, 2),
        "hidden": 64,
        "vit_layers": 2,
        "heads": 4,
        "mlp_dim": 128,
        "vit_channels": 128,
        "ndf": 16,
        "n_layers_d": 2,
    },
    "small": {
        "ngf": 32,
        "n_art": 9,
        "transformer_blocks": (0, 5),
        "hidden": 256,
        "vit_layers": 4,
        "heads": 8,
        "mlp_dim": 1024,
        "vit_channels": 512,
        "ndf": 32,
        "n_layers_d": 3,
    },
    "paper": {
        "ngf": 64,
        "n_art": 9,
        "transformer_blocks": (0, 5),
        "hidden": 768,
        "vit_layers": 12,
        "heads": 12,
        "mlp_dim": 3072,
        "vit_channels": 1024,
        "ndf": 64,
        "n_layers_d": 3,
    },
}


class MultiHeadSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention on tokens ``(B, N, hidden) -> (B, N, hidden)``."""

    def __init__(self, hidden: int, heads: int, attn_dropout: float = 0.0) -> None:
        super().__init__()
        if hidden % heads != 0:
            raise ConfigError(f"transformer hidden size {hidden} is not divisible by {heads} heads: choose heads dividing it")
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attn_dropout = nn.Dropout(attn_dropout)

    def _split(self, x: Tensor) -> Tensor:
        b, n, h = x.shape
        return x.view(b, n, self.heads, h // self.heads).transpose(1, 2)  # (B, heads, N, d)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        context = self.attn_dropout(weights) @ v  # (B, heads, N, d)
        b, _, n, _ = context.shape
        return self.out(context.transpose(1, 2).reshape(b, n, -1))


class TransformerLayer(nn.Module):
    """Pre-norm ViT layer: ``x + MSA(LN(x))`` then ``x + MLP(LN(x))`` (GELU, dropout)."""

    def __init__(self, hidden: int, heads: int, mlp_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.attention = MultiHeadSelfAttention(hidden, heads)
        self.mlp_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, hidden), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class TransformerEncoder(nn.Module):
    """``layers`` ViT layers and a final LayerNorm: tokens ``(B, N, hidden) -> (B, N, hidden)``."""

    def __init__(self, hidden: int, layers: int, heads: int, mlp_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList([TransformerLayer(hidden, heads, mlp_dim, dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(hidden, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class ChannelCompression(nn.Module):
    """Residual block ``in_ch -> out_ch``: [conv3x3, BN, ReLU, conv3x3, BN] + [1x1 conv, BN] skip, ReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.skip = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.block(x) + self.skip(x))


def _down(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


class ARTBlock(nn.Module):
    """Aggregated residual transformer block on ``(B, dim, h, w)`` (h, w multiples of 4).

    With ``hidden`` set, the block owns the transformer's input/output path (downsampling, patch
    and position embedding for ``n_tokens`` = h/4 * w/4 tokens, upsampling, channel compression);
    the :class:`TransformerEncoder` itself is passed to :meth:`forward` so several blocks can share
    one. Without ``hidden`` it is only the residual CNN block.
    """

    def __init__(self, dim: int, hidden: int | None = None, vit_channels: int = 0, n_tokens: int = 0, dropout: float = 0.1) -> None:
        super().__init__()
        self.has_transformer = hidden is not None
        if hidden is not None:
            self.downsample = nn.Sequential(*_down(dim, 2 * dim), *_down(2 * dim, vit_channels))
            self.patch_embedding = nn.Conv2d(vit_channels, hidden, 1)
            self.position_embedding = nn.Parameter(torch.zeros(1, n_tokens, hidden))
            self.embedding_dropout = nn.Dropout(dropout)
            self.upsample = nn.Sequential(*_up(hidden, 2 * dim), *_up(2 * dim, dim))
            self.compression = ChannelCompression(2 * dim, dim)
        self.residual = ResnetBlock(dim, norm="batch", bias=False)

    def forward(self, x: Tensor, transformer: TransformerEncoder | None = None, cnn_only: bool = False) -> Tensor:
        if self.has_transformer and not cnn_only:
            if transformer is None:
                raise ValueError("this ART block has a transformer path: pass its TransformerEncoder")
            z = self.patch_embedding(self.downsample(x))  # (B, hidden, h/4, w/4)
            b, hidden, gh, gw = z.shape
            tokens = self.embedding_dropout(z.flatten(2).transpose(1, 2) + self.position_embedding)
            z = transformer(tokens).transpose(1, 2).reshape(b, hidden, gh, gw)
            x = self.compression(torch.cat([self.upsample(z), x], 1))
        return self.residual(x)


class ResViTGenerator(nn.Module):
    """ResViT generator: ``(B, in_channels, H, W)`` in [-1, 1] -> ``(B, 1, H, W)`` (Tanh); H, W multiples of 16.

    ``transformer_blocks``: indices of the ART blocks with a transformer path; with
    ``share_transformer`` they all use one :class:`TransformerEncoder` (``self.transformers[0]``).
    ``cnn_only`` (attribute): skip every transformer path (ResViT's first, ``res_cnn`` stage).
    """

    cnn_only: bool = False

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        ngf: int = 64,
        n_art: int = 9,
        transformer_blocks: Sequence[int] = (0, 5),
        share_transformer: bool = True,
        hidden: int = 768,
        vit_layers: int = 12,
        heads: int = 12,
        mlp_dim: int = 3072,
        vit_channels: int = 1024,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        positions = sorted(set(transformer_blocks))
        if any(i < 0 or i >= n_art for i in positions):
            raise ConfigError(f"transformer_blocks {list(transformer_blocks)} must index the {n_art} ART blocks (0..{n_art - 1})")
        dim = 4 * ngf
        n_tokens = (image_size // 16) ** 2
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            *_down(ngf, 2 * ngf),
            *_down(2 * ngf, dim),
        )
        self.art = nn.ModuleList(
            [
                ARTBlock(dim, hidden if i in positions else None, vit_channels, n_tokens, dropout)
                for i in range(n_art)
            ]
        )
        n_encoders = (1 if share_transformer else len(positions)) if positions else 0
        self.transformers = nn.ModuleList([TransformerEncoder(hidden, vit_layers, heads, mlp_dim, dropout) for _ in range(n_encoders)])
        self.transformer_of_block = {i: (0 if share_transformer else k) for k, i in enumerate(positions)}
        self.decoder = nn.Sequential(
            *_up(dim, 2 * ngf),
            *_up(2 * ngf, ngf),
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, 1, 7),
            nn.Tanh(),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.encoder(x)
        for i, block in enumerate(self.art):
            k = self.transformer_of_block.get(i)
            x = block(x, self.transformers[k] if k is not None else None, self.cnn_only)
        return self.decoder(x)


class ResViT(SignedGeneratorModel):
    """ResViT-like translation model (see the module docstring); I/O in [0, 1], networks in [-1, 1]."""

    name = "resvit"

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 256,
        ngf: int = 64,
        n_art: int = 9,
        transformer_blocks: Sequence[int] = (0, 5),
        share_transformer: bool = True,
        hidden: int = 768,
        vit_layers: int = 12,
        heads: int = 12,
        mlp_dim: int = 3072,
        vit_channels: int = 1024,
        dropout: float = 0.1,
        ndf: int = 64,
        n_layers_d: int = 3,
        lambda_l1: float = 100.0,
        lambda_adv: float = 1.0,
        lr: float = 2e-4,
        cnn_pretrain: float = 0.5,
        vit_weights: str | None = None,
    ) -> None:
        super().__init__(in_channels, image_size)
        check_image_size("ResViT", image_size, multiple=16, minimum=32)
        if not 0.0 <= cnn_pretrain < 1.0:
            raise ConfigError(f"cnn_pretrain (fraction of the steps without transformers) must be in [0, 1), got {cnn_pretrain}")
        self.cnn_pretrain = float(cnn_pretrain)
        self.total_steps = 1
        self.lambda_l1 = lambda_l1
        self.lambda_adv = lambda_adv
        self.lr = lr
        self.generator = ResViTGenerator(
            in_channels, image_size, ngf, n_art, transformer_blocks, share_transformer, hidden, vit_layers, heads, mlp_dim, vit_channels, dropout
        )
        self.discriminator = PatchDiscriminator(in_channels + 1, ndf, n_layers_d)
        init_normal(self.generator)
        init_normal(self.discriminator)
        if vit_weights:
            for encoder in self.generator.transformers:
                load_vit_weights(encoder, vit_weights)

    def set_total_steps(self, steps: int) -> None:
        self.total_steps = max(int(steps), 1)

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {
            "D": OptimizerSpec(list(self.discriminator.parameters()), lr=self.lr, schedule="linear_decay"),
            "G": OptimizerSpec(list(self.generator.parameters()), lr=self.lr, schedule="linear_decay"),
        }

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor]:
        self.generator.cnn_only = ctx.step < int(self.cnn_pretrain * self.total_steps)
        try:
            return self._gan_step(batch, ctx)
        finally:
            self.generator.cnn_only = False  # inference always runs the full model

    def _gan_step(self, batch: Batch, ctx: StepContext) -> dict[str, float]:
        src = to_signed(batch["source"])
        real = to_signed(batch["target"])
        with ctx.autocast():
            fake = self.generator(src)
            self.discriminator.requires_grad_(True)
            d_real = self.discriminator(torch.cat([src, real], 1))
            d_fake = self.discriminator(torch.cat([src, fake.detach()], 1))
            loss_d = 0.5 * self.lambda_adv * (lsgan_loss(d_real, True) + lsgan_loss(d_fake, False))
        ctx.optimize("D", loss_d)
        with ctx.autocast():
            self.discriminator.requires_grad_(False)
            g_adv = lsgan_loss(self.discriminator(torch.cat([src, fake], 1)), True)
            l1 = F.l1_loss(fake.float(), real)
            loss_g = self.lambda_adv * g_adv + self.lambda_l1 * l1
        ctx.optimize("G", loss_g)
        self.discriminator.requires_grad_(True)
        return {"loss_D": loss_d.detach(), "loss_G_gan": g_adv.detach(), "loss_G_l1": l1.detach()}


def _vit_npz_state(arrays: dict[str, np.ndarray], encoder: TransformerEncoder) -> dict[str, Tensor]:
    """Google ViT ``.npz`` (``Transformer/encoderblock_{i}/...``, as ResViT's ``load_from`` reads it)
    -> a state dict of :class:`TransformerEncoder`. Kernels are (in, out) there, (out, in) here."""
    state: dict[str, Tensor] = {}
    hidden = encoder.norm.normalized_shape[0]

    def t(key: str) -> Tensor:
        if key not in arrays:
            raise KeyError(key)
        return torch.from_numpy(arrays[key].astype("float32"))

    for i in range(len(encoder.layers)):
        root, ours = f"Transformer/encoderblock_{i}/", f"layers.{i}."
        att = root + "MultiHeadDotProductAttention_1/"
        for name in ("query", "key", "value"):
            state[ours + f"attention.{name}.weight"] = t(att + f"{name}/kernel").reshape(hidden, hidden).T
            state[ours + f"attention.{name}.bias"] = t(att + f"{name}/bias").reshape(hidden)
        state[ours + "attention.out.weight"] = t(att + "out/kernel").reshape(hidden, hidden).T
        state[ours + "attention.out.bias"] = t(att + "out/bias").reshape(hidden)
        for k, ln in (("attention_norm", "LayerNorm_0"), ("mlp_norm", "LayerNorm_2")):
            state[ours + f"{k}.weight"] = t(root + f"{ln}/scale")
            state[ours + f"{k}.bias"] = t(root + f"{ln}/bias")
        for k, dense in (("0", "Dense_0"), ("3", "Dense_1")):
            state[ours + f"mlp.{k}.weight"] = t(root + f"MlpBlock_3/{dense}/kernel").T
            state[ours + f"mlp.{k}.bias"] = t(root + f"MlpBlock_3/{dense}/bias")
    state["norm.weight"] = t("Transformer/encoder_norm/scale")
    state["norm.bias"] = t("Transformer/encoder_norm/bias")
    return state


def load_vit_weights(encoder: TransformerEncoder, path: str | os.PathLike[str]) -> None:
    """Initialise ``encoder`` from a local ViT checkpoint: Google's ``.npz`` (e.g. ``ViT-B_16.npz`` or
    ``R50+ViT-B_16.npz``, the file ResViT loads; only the transformer layers and the final norm are
    read, the first ``len(encoder.layers)`` blocks) or a torch file holding the encoder's state dict
    (read with ``weights_only=True``). Shapes must match the preset (ViT-B: ``size="paper"``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ResViT vit_weights: {p} does not exist; pass the path of a local ViT .npz (nothing is downloaded)")
    try:
        if p.suffix == ".npz":
            with np.load(p) as data:
                state = _vit_npz_state({k: data[k] for k in data.files}, encoder)
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError("not a state dict")
        encoder.load_state_dict(state)
    except KeyError as exc:
        raise ConfigError(f"ResViT vit_weights: {p} lacks {exc.args[0]}: pass a ViT checkpoint in Google's .npz layout") from None
    except (RuntimeError, ValueError, OSError, pickle.UnpicklingError) as exc:
        detail = str(exc).strip().splitlines()[0][:160]
        raise ConfigError(f"ResViT vit_weights: {p} does not fit this encoder ({detail}); ViT-B/16 fits size='paper'") from None


def build(size: str = "tiny", in_channels: int = 1, image_size: int = 64, **options: object) -> ResViT:
    """Registry builder: ResViT-like model at preset ``size`` (see :data:`PRESETS`) for ``image_size``^2 inputs."""
    if size not in PRESETS:
        raise ConfigError(f"unknown size {size!r}: use one of {', '.join(PRESETS)}")
    kwargs: dict[str, object] = dict(PRESETS[size])
    kwargs.update(options)
    return ResViT(in_channels=in_channels, image_size=image_size, **kwargs)  # type: ignore[arg-type]
