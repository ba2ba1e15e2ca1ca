"""Keyed random streams: one independent, counter-based stream per image.

A :class:`torch.Generator` draws a batch as one sequence, so the noise an image gets depends on
its position in the batch and on the batch size, and a CPU generator and a CUDA generator give
different numbers. A score computed with one cannot be reproduced with another batch size or on
another device. :class:`KeyedStream` removes both dependences: row ``i`` of a batch has its own
64-bit key (in the bench: the evaluation seed, the perturbation, the subject and the slice), and
its ``j``-th number is a pure function of ``(key, j)``.

Algorithm: SplitMix64 (Steele, Lea & Flood, OOPSLA 2014; the generator behind Java's
``SplittableRandom`` and the seeding generator of the xoshiro family, which passes BigCrush):
number ``j`` of the stream with key ``k`` is ``mix64(k + (j + 1) * 0x9E3779B97F4A7C15)``. It is
plain int64 tensor arithmetic (a wrapping multiply, xor and logical shifts), so a whole batch is
drawn in a few vectorised kernels on any device and the bits are the same on the CPU and on a GPU.

- uniforms (float32, [0, 1)): the top 24 bits, times 2^-24 (every value exact in float32);
- normals (float32): Box-Muller in float64 from two 53-bit uniforms (``u1`` in (0, 1]), cast
  to float32; each normal consumes two counters;
- every draw of shape ``(B, ...)`` consumes ``prod(shape[1:])`` counters (twice that for normals) of
  every row, so the rows stay in step whatever the batch holds.

The counter is a Python int held by the stream: draws advance it, and :meth:`KeyedStream.spawn`
makes child streams (an EOT model call, a restart) whose keys are drawn from the parent.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import torch
from torch import Tensor

from robustmri.errors import DataError

_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1


def _signed(v: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits."""
    v &= _MASK64
    return v - (1 << 64) if v >= 1 << 63 else v


_GAMMA_S, _MIX1_S, _MIX2_S = _signed(_GAMMA), _signed(_MIX1), _signed(_MIX2)


def _srl(z: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 ``z`` by ``s`` bits (torch's ``>>`` is arithmetic)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def mix64(z: Tensor) -> Tensor:
    """SplitMix64's finaliser on int64 bits (wrapping arithmetic), elementwise."""
    z = (z ^ _srl(z, 30)) * _MIX1_S
    z = (z ^ _srl(z, 27)) * _MIX2_S
    return z ^ _srl(z, 31)


def splitmix64_reference(key: int, j: int) -> int:
    """Number ``j`` (0-based) of the stream with ``key``, as an unsigned int: the pure-Python
    definition the tensor code is tested against."""
    z = (key + (j + 1) * _GAMMA) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def derive_seed(seed: int, *keys: object) -> int:
    """A stable 63-bit seed from ``seed`` and any keys (names, severities, indices).

    Uses CRC32 of the keys' text, not Python's salted ``hash``, so the result is the same in every
    process and Python version.
    """
    text = "|".join([str(int(seed))] + [str(k) for k in keys])
    lo = zlib.crc32(text.encode("utf-8"))
    hi = zlib.crc32(text[::-1].encode("utf-8"))
    return ((hi << 32) | lo) & 0x7FFF_FFFF_FFFF_FFFF


class KeyedStream:
    """Counter-based random numbers for a batch, one stream per row.

    ``keys``: (B,) 64-bit keys (an int64 tensor on any device, or ints), one per row; ``offset``:
    counters already used. Draw with :meth:`uniform`, :meth:`normal` and :meth:`spawn`; every
    shape's first dimension must be B. The same key gives the same numbers at any batch size, in
    any batch position and on any device. Nothing is read back to the host: keys drawn on a GPU
    stay there (a training step draws them without a sync).
    """

    def __init__(self, keys: Tensor | Sequence[int], offset: int = 0) -> None:
        if isinstance(keys, Tensor):
            k = keys.detach().to(torch.int64).flatten()
        else:
            k = torch.tensor([_signed(int(v)) for v in keys], dtype=torch.int64)
        self.keys = k
        self.offset = int(offset)
        self._on: dict[torch.device, Tensor] = {k.device: k}

    @classmethod
    def for_rows(cls, seed: int, tag: object, rows: Sequence[tuple[object, ...]]) -> KeyedStream:
        """One stream per row, keyed by ``(seed, tag, *row)`` (e.g. ``row = (subject, slice)``)."""
        return cls([derive_seed(seed, tag, *row) for row in rows])

    def __len__(self) -> int:
        return int(self.keys.numel())

    def __repr__(self) -> str:
        return f"KeyedStream(rows={len(self)}, offset={self.offset})"

    def _keys(self, device: torch.device) -> Tensor:
        if device not in self._on:
            self._on[device] = self.keys.to(device)
        return self._on[device]

    def _check(self, shape: tuple[int, ...]) -> int:
        if len(shape) < 1 or int(shape[0]) != len(self):
            raise DataError(f"a keyed stream of {len(self)} rows cannot draw shape {tuple(shape)}: the first dimension must be {len(self)}")
        return math.prod(int(s) for s in shape[1:])

    def bits(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        """The next ``n`` numbers of every row as raw int64 bits, (B, n); advances the counter by n."""
        dev = torch.device(device)
        j = torch.arange(self.offset + 1, self.offset + 1 + n, device=dev, dtype=torch.int64)
        self.offset += n
        return mix64(self._keys(dev)[:, None] + j[None, :] * _GAMMA_S)

    def uniform(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
        """Uniform float32 draws in [0, 1) of ``shape`` (B, ...) on ``device``."""
        n = self._check(shape)
        z = self.bits(n, device)
        return (_srl(z, 40).to(torch.float32) * (2.0**-24)).view(shape)

    def normal(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
        """Standard normal float32 draws of ``shape`` (B, ...) on ``device`` (Box-Muller)."""
        n = self._check(shape)
        z = self.bits(2 * n, device).view(len(self), n, 2)
        u1 = (_srl(z[..., 0], 11).to(torch.float64) + 1.0) * (2.0**-53)
        u2 = _srl(z[..., 1], 11).to(torch.float64) * (2.0**-53)
        out = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
        return out.to(torch.float32).view(shape)

    def spawn(self) -> KeyedStream:
        """A child stream per row, keyed by the parent's next number (advances the parent by one)."""
        return KeyedStream(self.bits(1, self.keys.device)[:, 0])


RandomSource = torch.Generator | KeyedStream
"""Where a draw comes from: a torch generator (one sequence for the batch) or a keyed stream (one per row)."""


def _draw(kind: str, shape: tuple[int, ...], source: RandomSource | None, device: torch.device | str) -> Tensor:
    if isinstance(source, KeyedStream):  # one stream per row, computed on ``device``
        return source.normal(shape, device) if kind == "normal" else source.uniform(shape, device)
    # A torch generator draws on its own device (a CPU generator cannot feed CUDA kernels); then move.
    gdev = source.device if source is not None else torch.device(device)
    fn = torch.randn if kind == "normal" else torch.rand
    return fn(shape, generator=source, device=gdev, dtype=torch.float32).to(device)


def normal(shape: tuple[int, ...], source: RandomSource | None, device: torch.device | str) -> Tensor:
    """Standard normal float32 draws of ``shape`` on ``device`` from ``source``: a keyed stream
    (``shape[0]`` is the batch, one stream per row), a torch generator, or None (torch's global RNG)."""
    return _draw("normal", shape, source, device)


def uniform(shape: tuple[int, ...], source: RandomSource | None, device: torch.device | str) -> Tensor:
    """Uniform [0, 1) float32 draws of ``shape`` on ``device`` from ``source`` (as :func:`normal`)."""
    return _draw("uniform", shape, source, device)
