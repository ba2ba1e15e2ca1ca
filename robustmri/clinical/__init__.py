"""Clinical utility of a synthesized contrast: what happens to lesions (kept, blurred away or
invented), scored per test subject next to PSNR and SSIM.

- :mod:`robustmri.clinical.lesions`: lesion intensity scores, lesion contrast and the fixed lesion
  detector;
- :mod:`robustmri.clinical.scores`: one row of clinical scores per test subject of a cell.

Owns these scores. May import the data layer (tissue labels), the metrics and the bottom layer;
never training, the bench, the results table or the report (docs/architecture.md).
"""

from robustmri.clinical.scores import CLINICAL_SCORES, clinical_frame

__all__ = ["CLINICAL_SCORES", "clinical_frame"]
