"""What happens to a lesion in a synthesized image: its intensities, its contrast, and whether a
fixed detector still finds it (or finds one that is not there).

All functions take one subject at a time: ``pred`` and ``target`` (S, H, W) float arrays in
[0, 1] (the model's space: the synthesized and the real target-contrast slices of the subject's
test slices, in slice order), ``labels`` (S, H, W) integer tissue labels of the real anatomy
(:data:`robustmri.data.tissues.SEG_LABELS`: 3 white matter; 4 oedema, 5 tumour core and 6
white-matter hyperintensities are lesion) and ``brain`` (S, H, W) bool.

The detector (:func:`detect`) is the same for real and synthesized images, fixed and documented,
and not learned: a deliberately simple reading of "a lesion is tissue that looks unlike normal
white matter where white matter or lesion lies":

1. the normal-appearing white matter (NAWM): white-matter voxels (label 3) whose 4 in-plane
   neighbours are white matter too (little partial volume); its median ``m`` over the whole
   subject, in the image read (robust to the lesions, which the labels exclude);
2. the search region: white matter and lesion labels (where a lesion of these types lies), so
   that grey matter and CSF, which differ from white matter by nature, are not searched;
3. candidates: search-region voxels that differ from ``m`` by more than :data:`DETECT_CONTRAST`
   (30 %) of it, ``|x - m| > 0.3 m``, in either direction (lesions are bright on T2w and FLAIR and
   dark on T1w). A contrast threshold, not one in units of the image's spread: a synthesized image
   is smoother than an acquired one, and a threshold of a few standard deviations of its white
   matter would flag every small intensity error as a lesion;
4. findings: 8-connected components of the candidates per slice with at least
   :data:`MIN_AREA_MM2` (8 mm²) of area; slices are scored apart because suites score slices
   that lie several millimetres apart.

The lesions of a subject are the 8-connected components per slice of the lesion labels with at
least the same area. A lesion is **found** in an image when a finding overlaps it. Scored against
the real image, which is what a synthesized one replaces:

- ``lesions_kept``: of the lesions the detector finds on the real image, the fraction it also
  finds on the synthesized one (1 for a model that returns the real target);
- ``lesions_invented``: findings on the synthesized image that overlap neither a true lesion
  (grown by :data:`MARGIN_PX` pixels) nor any candidate voxel on the real image (0 for the real
  target);
- ``detector_sensitivity``: the fraction of lesions found on the real image (the detector's own
  ceiling, the same for every model).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from robustmri.data.tissues import LESION_LABELS, SEG_LABELS

__all__ = [
    "DETECT_CONTRAST", "MARGIN_PX", "MIN_AREA_MM2", "Detection", "contrast", "detect", "lesion_components", "lesion_intensity_scores",
    "nawm_mask", "subject_lesion_scores",
]

DETECT_CONTRAST = 0.3
"""Relative difference from the normal-appearing white matter's median above which a voxel is a candidate."""

MIN_AREA_MM2 = 8.0
"""Smallest finding and smallest lesion counted, in mm² of one slice (2.8 pixels at 1.64 mm)."""

MARGIN_PX = 2
"""Pixels a true lesion is grown by before a finding outside it counts as invented."""

_WM = SEG_LABELS["wm"]
_EIGHT = np.ones((3, 3), dtype=bool)


def _lesion(labels: np.ndarray) -> np.ndarray:
    return np.isin(labels, LESION_LABELS)


def nawm_mask(labels: np.ndarray) -> np.ndarray:
    """Normal-appearing white matter: white-matter voxels whose 4 in-plane neighbours are white
    matter too (bool, same shape as ``labels`` (S, H, W))."""
    wm = labels == _WM
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    return np.stack([ndimage.binary_erosion(s, cross) for s in wm]) if wm.ndim == 3 else ndimage.binary_erosion(wm, cross)


def _min_area_px(spacing_mm: float) -> int:
    return max(1, math.ceil(MIN_AREA_MM2 / (spacing_mm * spacing_mm)))


def _components(mask: np.ndarray, min_px: int) -> list[tuple[int, np.ndarray]]:
    """(slice, bool (H, W) component) for each 8-connected component of ``mask`` (S, H, W) per slice
    with at least ``min_px`` pixels."""
    out = []
    for k, plane in enumerate(mask):
        lab, n = ndimage.label(plane, structure=_EIGHT)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())
        for i in range(1, n + 1):
            if sizes[i] >= min_px:
                out.append((k, lab == i))
    return out


def lesion_components(labels: np.ndarray, spacing_mm: float) -> list[tuple[int, np.ndarray]]:
    """The subject's lesions: 8-connected components of the lesion labels per slice, at least
    :data:`MIN_AREA_MM2` each, as (slice index, bool (H, W))."""
    return _components(_lesion(labels), _min_area_px(spacing_mm))


class Detection:
    """The detector's findings on one image of a subject (see the module docstring); ``centre``:
    the NAWM median it compares with, ``threshold``: the absolute difference that makes a candidate."""

    def __init__(self, image: np.ndarray, labels: np.ndarray, spacing_mm: float, contrast: float = DETECT_CONTRAST) -> None:
        ref = image[nawm_mask(labels)]
        self.centre = float(np.median(ref)) if ref.size >= 10 else float("nan")
        if not np.isfinite(self.centre) or self.centre <= 0:
            self.threshold = float("nan")
            self.candidates = np.zeros_like(labels, dtype=bool)
        else:
            self.threshold = contrast * self.centre
            region = (labels == _WM) | _lesion(labels)
            self.candidates = region & (np.abs(image - self.centre) > self.threshold)
        self.findings = _components(self.candidates, _min_area_px(spacing_mm))

    def finds(self, k: int, component: np.ndarray) -> bool:
        """Whether a finding of slice ``k`` overlaps ``component`` (bool (H, W))."""
        return bool((self.candidates[k] & component).any()) and any(
            s == k and (f & component).any() for s, f in self.findings)


def detect(image: np.ndarray, labels: np.ndarray, spacing_mm: float, contrast: float = DETECT_CONTRAST) -> Detection:
    """The fixed detector's findings on ``image`` (S, H, W) of a subject with tissue ``labels``."""
    return Detection(image, labels, spacing_mm, contrast)


def contrast(image: np.ndarray, labels: np.ndarray) -> float:
    """Lesion contrast: (mean over lesion voxels - NAWM mean) / NAWM mean, signed (positive: the
    lesion is brighter than normal white matter). NaN without lesion or NAWM voxels."""
    lesion, nawm = _lesion(labels), nawm_mask(labels)
    if not lesion.any() or not nawm.any():
        return float("nan")
    ref = float(image[nawm].mean())
    return float((image[lesion].mean() - ref) / ref) if ref > 0 else float("nan")


def lesion_intensity_scores(pred: np.ndarray, target: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """PSNR (dB, data range 1), MAE and SSIM inside the lesion voxels of the subject (NaN without
    any). SSIM: the 11x11 Gaussian SSIM map of each slice (robustmri.metrics, data range 1)
    averaged over the lesion voxels of its valid region."""
    import torch

    from robustmri.metrics import ssim_map, ssim_pad

    lesion = _lesion(labels)
    if not lesion.any():
        return {"lesion_psnr": float("nan"), "lesion_mae": float("nan"), "lesion_ssim": float("nan")}
    diff = (pred[lesion].astype(np.float64) - target[lesion].astype(np.float64))
    mse = float(np.mean(diff * diff))
    psnr = float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)
    p = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float64))[:, None]
    t = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float64))[:, None]
    smap = ssim_map(p, t, data_range=1.0)[:, 0].numpy()
    pad = ssim_pad()
    inner = lesion[:, pad : lesion.shape[1] - pad, pad : lesion.shape[2] - pad]
    ssim = float(smap[inner].mean()) if inner.any() else float("nan")
    return {"lesion_psnr": psnr, "lesion_mae": float(np.mean(np.abs(diff))), "lesion_ssim": ssim}


def subject_lesion_scores(pred: np.ndarray, target: np.ndarray, labels: np.ndarray, spacing_mm: float) -> dict[str, float]:
    """Every lesion score of one subject (see the module docstring): the intensity scores, the
    contrast kept (synthesized contrast over real contrast: 1 kept, 0 gone, below 0 inverted), the
    lesions found on the real image and kept on the synthesized one, the lesions invented, and the
    detector's sensitivity on the real image. Counts are floats (NaN where undefined)."""
    out = lesion_intensity_scores(pred, target, labels)
    real_c, syn_c = contrast(target, labels), contrast(pred, labels)
    out["lesion_contrast_real"] = real_c
    out["contrast_kept"] = syn_c / real_c if math.isfinite(real_c) and abs(real_c) > 1e-6 else float("nan")
    truth = lesion_components(labels, spacing_mm)
    real, syn = detect(target, labels, spacing_mm), detect(pred, labels, spacing_mm)
    found_real = [(k, c) for k, c in truth if real.finds(k, c)]
    out["lesions"] = float(len(truth))
    out["detector_sensitivity"] = len(found_real) / len(truth) if truth else float("nan")
    out["lesions_kept"] = (sum(syn.finds(k, c) for k, c in found_real) / len(found_real)) if found_real else float("nan")
    grown = np.stack([ndimage.binary_dilation(s, _EIGHT, iterations=MARGIN_PX) if s.any() else s for s in _lesion(labels)])
    invented = 0
    for k, finding in syn.findings:
        if (finding & grown[k]).any() or (finding & real.candidates[k]).any():
            continue
        invented += 1
    out["lesions_invented"] = float(invented)
    return out
