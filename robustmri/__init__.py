"""robustmri: a robustness benchmark for multi-contrast MRI translation.

Sub-packages
------------
- :mod:`robustmri.data`     embedded physics-based brain dataset and NIfTI readers
- :mod:`robustmri.metrics`  masked PSNR / SSIM / MAE / NMSE (batched torch)
- :mod:`robustmri.perturb`  noise, blur, MRI artifacts, adversarial attacks
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
