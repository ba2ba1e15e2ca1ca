"""Acquisition variety of the embedded simulator: site profiles drawn per subject.

A *site profile* is a field strength and, per contrast, the ranges its sequence parameters are drawn
from (uniformly, per subject). The ranges are inferred from published protocols, not copied from
one scanner:

- ``ixi-1.5T``, ``ixi-3T``: IXI-like. T1w is a 3-D spoiled gradient echo (IXI's Philips scans:
  TR about 9.8 ms, TE about 4.6 ms, flip 8 degrees); T2w and PDw are turbo spin echoes with a long
  TR (IXI: about 5.7-8.2 s) and TE about 100 ms (T2w) or 8 ms (PDw).
- ``clinical-1.5T``, ``clinical-3T``: spin-echo T1w (TR 450-700 ms, TE 8-15 ms) as in many
  clinical and BraTS-contributing protocols; T2w and PDw turbo spin echoes with shorter TRs.

PDw TRs are long (6-10 s; 8-10 s at 3 T): with CSF's long T1 (about 4 s at 3 T) a shorter TR
leaves CSF darker than GM, and PDw would no longer order tissues by proton density.

FLAIR is an inversion recovery in every profile (TR 8-11 s, TE 90-140 ms, TI nulling the CSF of the
profile's field strength). A contrast's sequence kind and times enter ``params.json`` per subject.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robustmri.data.physics import Sequence
from robustmri.errors import ConfigError

Range = tuple[float, float]


@dataclass(frozen=True)
class SequenceRange:
    """Ranges (ms; degrees for ``flip_deg``) one contrast's sequence is drawn from, uniformly."""

    kind: str
    tr: Range
    te: Range
    flip_deg: Range | None = None

    def draw(self, rng: np.random.Generator) -> Sequence:
        tr = float(rng.uniform(*self.tr))
        te = float(rng.uniform(*self.te))
        flip = float(rng.uniform(*self.flip_deg)) if self.flip_deg is not None else None
        return Sequence(self.kind, tr=round(tr, 3), te=round(te, 3), ti=None, flip_deg=None if flip is None else round(flip, 3))


_FLAIR = SequenceRange("ir", (8000.0, 11000.0), (90.0, 140.0))

SITE_PROFILES: dict[str, tuple[str, dict[str, SequenceRange]]] = {
    "ixi-1.5T": ("1.5T", {
        "t1": SequenceRange("gre", (9.0, 12.0), (4.0, 5.0), (8.0, 15.0)),
        "t2": SequenceRange("se", (5000.0, 8200.0), (90.0, 110.0)),
        "pd": SequenceRange("se", (6000.0, 8200.0), (8.0, 12.0)),
        "flair": _FLAIR,
    }),
    "ixi-3T": ("3T", {
        "t1": SequenceRange("gre", (8.0, 10.0), (3.5, 4.8), (8.0, 12.0)),
        "t2": SequenceRange("se", (5000.0, 6000.0), (80.0, 100.0)),
        "pd": SequenceRange("se", (8000.0, 10000.0), (8.0, 10.0)),
        "flair": _FLAIR,
    }),
    "clinical-1.5T": ("1.5T", {
        "t1": SequenceRange("se", (450.0, 700.0), (8.0, 15.0)),
        "t2": SequenceRange("se", (3500.0, 5000.0), (90.0, 120.0)),
        "pd": SequenceRange("se", (5000.0, 7000.0), (10.0, 20.0)),
        "flair": _FLAIR,
    }),
    "clinical-3T": ("3T", {
        "t1": SequenceRange("se", (500.0, 700.0), (8.0, 12.0)),
        "t2": SequenceRange("se", (3500.0, 5500.0), (80.0, 110.0)),
        "pd": SequenceRange("se", (8000.0, 10000.0), (10.0, 15.0)),
        "flair": _FLAIR,
    }),
}


def check_profiles(names: tuple[str, ...]) -> None:
    """One-line error for an unknown or empty list of site profiles."""
    unknown = [n for n in names if n not in SITE_PROFILES]
    if unknown or not names:
        raise ConfigError(f"unknown site profile(s) {unknown or '(none given)'}: use some of {', '.join(SITE_PROFILES)}")


def draw_site(rng: np.random.Generator, names: tuple[str, ...], contrasts: tuple[str, ...]) -> tuple[str, str, dict[str, Sequence]]:
    """A subject's site: (profile name, field strength, {contrast: Sequence})."""
    name = names[int(rng.integers(len(names)))]
    field, ranges = SITE_PROFILES[name]
    return name, field, {c: ranges[c].draw(rng) for c in contrasts}


def truncate_kspace(volume: np.ndarray, fraction: float) -> np.ndarray:
    """Keep the central ``fraction`` of in-plane k-space of every axial slice of ``volume`` (H, W, S)
    and reconstruct zero-filled (magnitude): the resolution of an acquired matrix ``fraction`` of
    the output's, with its Gibbs ringing. ``fraction >= 1`` returns a copy."""
    if fraction >= 1.0:
        return volume.astype(np.float32, copy=True)
    h, w = volume.shape[:2]
    k = np.fft.fftshift(np.fft.fft2(volume, axes=(0, 1)), axes=(0, 1))
    keep = np.zeros((h, w), dtype=bool)
    nh, nw = max(2, int(round(h * fraction))), max(2, int(round(w * fraction)))
    h0, w0 = (h - nh + 1) // 2, (w - nw + 1) // 2
    keep[h0 : h0 + nh, w0 : w0 + nw] = True
    k[~keep] = 0
    return np.abs(np.fft.ifft2(np.fft.ifftshift(k, axes=(0, 1)), axes=(0, 1))).astype(np.float32)
