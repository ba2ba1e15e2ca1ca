"""Brain masks when a dataset ships none: a documented intensity-threshold rule.

Rule (applied per subject, on the volumes already on one grid):

1. for every contrast ``v``: ``v > THRESHOLD_FRACTION * percentile(v, 99)`` (the 99th percentile is
   taken over the whole volume, so a few hot voxels do not move the threshold);
2. union (logical OR) of those per-contrast masks;
3. holes fully enclosed in 3-D are filled (ventricles of a dark T1 stay inside the brain).

For skull-stripped data (BraTS, the embedded dataset) this is the non-zero region; for IXI, which
is not skull-stripped, it is the head (brain + skull + scalp). Prefer a real mask file when you
have one (``mask.nii.gz`` in the generic layout).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from robustmri.errors import DataError

THRESHOLD_FRACTION: float = 0.05
"""A voxel is foreground when brighter than this fraction of its volume's 99th percentile."""


def threshold_mask(
    volumes: Iterable[np.ndarray],
    fraction: float = THRESHOLD_FRACTION,
    source: str | Path = "volume",
) -> np.ndarray:
    """Bool (X, Y, Z) foreground mask from one or more co-registered volumes (see module rule).

    ``source`` names the subject / file in the error raised when the mask comes out empty.
    """
    from scipy.ndimage import binary_fill_holes

    mask: np.ndarray | None = None
    for vol in volumes:
        level = float(np.percentile(vol, 99.0))
        fg = vol > fraction * level if level > 0 else vol > 0
        mask = fg if mask is None else (mask | fg)
    if mask is None:
        raise ValueError("threshold_mask needs at least one volume")
    if not mask.any():
        raise DataError(
            f"{source}: every volume is empty (no voxel above zero), so no brain mask can be built: "
            "check the files or remove the subject"
        )
    return np.asarray(binary_fill_holes(mask), dtype=bool)
