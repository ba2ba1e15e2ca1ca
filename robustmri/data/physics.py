"""MR signal equations, Rician noise and bias fields for the embedded simulator.

All signals are magnitudes in arbitrary units on the scale of proton density (CSF PD = 1).

Signal equations (ideal 90-degree excitation, perfect spoiling, TE << TR):

- spin echo (T1w, T2w, PDw)::

      S = PD * (1 - exp(-TR / T1)) * exp(-TE / T2)

- inversion recovery (FLAIR; 180-degree inversion at TI before the excitation)::

      S = PD * |1 - 2 exp(-TI / T1) + exp(-TR / T1)| * exp(-TE / T2)

  which vanishes for a tissue with ``T1 = TI / ln(2 / (1 + exp(-TR / T1)))``; :func:`null_ti`
  returns the TI that nulls a given T1 (CSF for FLAIR).

- spoiled gradient echo (T1w as in IXI's 3-D T1 scans; flip angle ``a``, ``E1 = exp(-TR / T1)``)::

      S = PD * sin(a) (1 - E1) / (1 - cos(a) E1) * exp(-TE / T2*)

  with T2* taken as T2 (inferred: the simulator has no T2*; at TE of a few ms the factor is near 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robustmri.errors import ConfigError


@dataclass(frozen=True)
class Sequence:
    """Acquisition parameters of one contrast (times in ms).

    ``kind`` is ``"se"`` (spin echo), ``"ir"`` (inversion recovery) or ``"gre"`` (spoiled gradient
    echo). ``ti`` is only used for ``"ir"``; ``None`` means "null CSF" (computed from the nominal
    CSF T1 of the field strength). ``flip_deg`` (degrees) is only used for ``"gre"``.
    """

    kind: str
    tr: float
    te: float
    ti: float | None = None
    flip_deg: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("se", "ir", "gre"):
            raise ConfigError(f"unknown sequence kind {self.kind!r}: use 'se', 'ir' or 'gre'")
        if self.tr <= 0 or self.te <= 0 or (self.ti is not None and self.ti <= 0):
            raise ConfigError(f"sequence times must be > 0 ms, got TR={self.tr} TE={self.te} TI={self.ti}")
        if self.kind == "gre" and (self.flip_deg is None or not 0 < self.flip_deg <= 90):
            raise ConfigError(f"a gradient echo needs a flip angle in (0, 90] degrees, got {self.flip_deg}")


DEFAULT_SEQUENCES: dict[str, Sequence] = {
    # Clinical-style parameters (ms). T1w: short TR/TE; T2w: long TR/TE; PDw: long TR, short TE;
    # FLAIR: T2-weighted inversion recovery with TI chosen to null CSF.
    "t1": Sequence("se", tr=500.0, te=15.0),
    "t2": Sequence("se", tr=4000.0, te=100.0),
    "pd": Sequence("se", tr=8000.0, te=10.0),
    "flair": Sequence("ir", tr=9000.0, te=100.0, ti=None),
}


def spin_echo(pd: np.ndarray | float, t1: np.ndarray | float, t2: np.ndarray | float, tr: float, te: float) -> np.ndarray:
    """Spin-echo magnitude ``PD (1 - e^(-TR/T1)) e^(-TE/T2)``; times in ms, any broadcastable shapes."""
    return np.asarray(pd) * (1.0 - np.exp(-tr / np.asarray(t1))) * np.exp(-te / np.asarray(t2))


def inversion_recovery(
    pd: np.ndarray | float,
    t1: np.ndarray | float,
    t2: np.ndarray | float,
    tr: float,
    te: float,
    ti: float,
) -> np.ndarray:
    """Inversion-recovery magnitude ``PD |1 - 2e^(-TI/T1) + e^(-TR/T1)| e^(-TE/T2)``; times in ms."""
    t1 = np.asarray(t1)
    return np.asarray(pd) * np.abs(1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1)) * np.exp(-te / np.asarray(t2))


def spoiled_gradient_echo(
    pd: np.ndarray | float, t1: np.ndarray | float, t2: np.ndarray | float, tr: float, te: float, flip_deg: float
) -> np.ndarray:
    """Spoiled gradient-echo magnitude ``PD sin(a) (1 - E1) / (1 - cos(a) E1) e^(-TE/T2)``; times in ms."""
    a = math.radians(flip_deg)
    e1 = np.exp(-tr / np.asarray(t1))
    return np.asarray(pd) * math.sin(a) * (1.0 - e1) / (1.0 - math.cos(a) * e1) * np.exp(-te / np.asarray(t2))


def null_ti(t1: float, tr: float) -> float:
    """Inversion time (ms) that nulls a tissue of longitudinal relaxation ``t1`` (ms) at repetition ``tr``."""
    return float(t1 * math.log(2.0 / (1.0 + math.exp(-tr / t1))))


def signal(seq: Sequence, pd: np.ndarray | float, t1: np.ndarray | float, t2: np.ndarray | float, csf_t1: float) -> np.ndarray:
    """Signal of ``seq`` for tissue parameters; ``csf_t1`` (ms) sets TI when ``seq.ti`` is None."""
    if seq.kind == "se":
        return spin_echo(pd, t1, t2, seq.tr, seq.te)
    if seq.kind == "gre":
        assert seq.flip_deg is not None
        return spoiled_gradient_echo(pd, t1, t2, seq.tr, seq.te, seq.flip_deg)
    ti = seq.ti if seq.ti is not None else null_ti(csf_t1, seq.tr)
    return inversion_recovery(pd, t1, t2, seq.tr, seq.te, ti)


def add_rician_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``image`` plus complex Gaussian noise of standard deviation ``sigma`` per channel.

    ``|S + n_re + i n_im|`` with ``n ~ N(0, sigma^2)``: Rician-distributed, Rayleigh in the background
    (mean ``sigma sqrt(pi/2)``). Returns float32 of the same shape.
    """
    if sigma <= 0:
        return image.astype(np.float32, copy=True)
    re = image + rng.normal(0.0, sigma, size=image.shape)
    im = rng.normal(0.0, sigma, size=image.shape)
    return np.hypot(re, im).astype(np.float32)


def polynomial_bias_field(
    coords: tuple[np.ndarray, np.ndarray, np.ndarray],
    rng: np.random.Generator,
    strength: float,
    order: int = 3,
) -> np.ndarray:
    """Smooth multiplicative field ``exp(sum_ijk c_ijk x^i y^j z^k)`` with ``i + j + k <= order``.

    ``coords`` are three broadcastable arrays normalised to about [-1, 1]; coefficients are drawn
    uniform in ``[-strength, strength]`` and divided by ``(1 + degree)`` so higher orders are gentler
    (the construction of TorchIO's BiasField). The field is rescaled to geometric mean 1 so it does
    not change the overall brightness. ``strength = 0`` returns ones.
    """
    x, y, z = coords
    shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
    if strength <= 0:
        return np.ones(shape, dtype=np.float32)
    log_field = np.zeros(shape, dtype=np.float64)
    for i in range(order + 1):
        for j in range(order + 1 - i):
            for k in range(order + 1 - i - j):
                if i + j + k == 0:
                    continue
                c = rng.uniform(-strength, strength) / (1 + i + j + k)
                log_field = log_field + c * (x**i) * (y**j) * (z**k)
    log_field -= log_field.mean()
    return np.exp(log_field).astype(np.float32)
