"""robustmri: a robustness benchmark for multi-contrast MRI translation.

Sub-packages
------------
- :mod:`robustmri.data`     embedded physics-based brain dataset and NIfTI readers
- :mod:`robustmri.metrics`  masked PSNR / SSIM / MAE / NMSE (batched torch)
- :mod:`robustmri.perturb`  noise, blur, MRI artifacts, adversarial attacks

``robustmri.benchmark(model, out=...)`` scores your own ``torch.nn.Module`` on a suite in one call
(:mod:`robustmri.api`).
"""

from robustmri._version import __version__

__all__ = ["__version__", "benchmark"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """``robustmri.benchmark`` is imported on first use (so ``import robustmri`` stays light)."""
    if name == "benchmark":
        from robustmri.api import benchmark

        return benchmark
    raise AttributeError(f"module 'robustmri' has no attribute {name!r}")
