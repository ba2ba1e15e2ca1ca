"""Clinical utility of a synthesized contrast: what happens to lesions (kept, blurred away or
invented), scored per test subject next to PSNR and SSIM.

- :mod:`robustmri.clinical.lesions`: lesion intensity scores, lesion contrast and the fixed lesion
  detector;
- :mod:`robustmri.clinical.volume`: whole-volume scores (volume PSNR, 3-D SSIM) of a subject's
  stacked test slices, BraSyn's practice;
- :mod:`robustmri.clinical.segmenter`: a tissue segmenter trained once per suite on real images,
  frozen, and its Dice on real and synthesized ones;
- :mod:`robustmri.clinical.scores`: one row of clinical scores per test subject of a cell.

Owns these scores. May import the data layer (tissue labels), the metrics and the bottom layer;
never training, the bench, the results table or the report (docs/architecture.md).
"""

from robustmri.clinical.scores import CLINICAL_SCORES, DICE_SCORES, clinical_frame
from robustmri.clinical.segmenter import FrozenSegmenter, SegmenterConfig, load_or_train_segmenter

__all__ = ["CLINICAL_SCORES", "DICE_SCORES", "FrozenSegmenter", "SegmenterConfig", "clinical_frame", "load_or_train_segmenter"]
