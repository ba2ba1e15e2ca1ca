"""Models robustmri scores but never trains: a user's own ``torch.nn.Module``.

An external model is named by an *entry*:

- ``"package.module:build"``: an importable callable (on ``PYTHONPATH``) returning an ``nn.Module``;
- ``"path/to/file.py:build"``: the same from a Python file (relative paths resolve against the
  suite file's folder, then the working directory);
- ``"path/to/net.pt"`` (or ``.ts``, ``.torchscript``): a TorchScript archive written by
  ``torch.jit.script(model).save(path)`` (or ``torch.jit.trace``). robustmri never unpickles a
  model: a ``torch.save(model)`` pickle is refused with the export command to use instead;
- ``"object:NAME"``: a module handed to :func:`robustmri.benchmark` in this process.

The module maps ``(B, C, H, W)`` to ``(B, 1, H, W)`` in its own intensity range ``io_range``:
``"unit"`` ([0, 1]) or ``"symmetric"`` ([-1, 1], as pix2pix, ResViT and SynDiff work).
:class:`ExternalModel` converts from and to robustmri's [0, 1], checks the output's shape on every
call and its range on clean data (:meth:`ExternalModel.check_range`), and says whether gradients
flow through it (white-box attacks need them; without, only black-box attacks are run).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustmri.errors import ConfigError, DataError
from robustmri.models.base import Batch, OptimizerSpec, StepContext, TranslationModel
from robustmri.rng import RandomSource

__all__ = [
    "IO_RANGES",
    "TORCHSCRIPT_SUFFIXES",
    "ExternalModel",
    "external_digest",
    "load_external_module",
    "register_object",
]

IO_RANGES: dict[str, tuple[float, float]] = {"unit": (0.0, 1.0), "symmetric": (-1.0, 1.0)}
"""``io_range`` name -> (low, high) of the intensities the module takes and returns."""

TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript", ".pth")
RANGE_SLACK = 0.25
"""Fraction of the span an output may overshoot its declared range on clean data (networks
without a final activation overshoot a little; a [-1, 1] network declared ``unit`` overshoots by
a whole span)."""

_OBJECTS: dict[str, nn.Module] = {}


def register_object(name: str, module: nn.Module) -> str:
    """Make ``module`` reachable as the entry ``"object:NAME"`` in this process; returns the entry."""
    if not isinstance(module, nn.Module):
        raise ConfigError(f"benchmark() needs a torch.nn.Module, got {type(module).__name__}")
    _OBJECTS[name] = module
    return f"object:{name}"


def _is_torchscript_path(entry: str) -> bool:
    return ":" not in entry.replace("\\", "/").split("/")[-1] and entry.lower().endswith(TORCHSCRIPT_SUFFIXES)


def _find(path_text: str, base_dir: Path | None) -> Path:
    p = Path(path_text).expanduser()
    if not p.is_absolute():
        for root in ([base_dir] if base_dir is not None else []) + [Path.cwd()]:
            if (root / p).exists():
                return root / p
    return p


def _load_torchscript(path: Path, label: str) -> nn.Module:
    if not path.is_file():
        raise DataError(f"model {label}: {path} does not exist: give the path of a TorchScript file (torch.jit.save)")
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # deprecated in torch 2.13, still what users export
            return torch.jit.load(str(path), map_location="cpu")
    except Exception:  # noqa: BLE001 - torch raises several kinds for a non-archive
        raise DataError(
            f"model {label}: {path} is not a TorchScript archive, and robustmri does not unpickle models: export it "
            "with torch.jit.script(model).save(path) (or torch.jit.trace), or name a 'module:callable' that builds it"
        ) from None


def _import_callable(entry: str, base_dir: Path | None, label: str) -> Callable[..., Any]:
    module_part, _, attr = entry.rpartition(":")
    if not module_part or not attr:
        raise ConfigError(
            f"model {label}: external = {entry!r} must be 'module:callable', 'file.py:callable' or a TorchScript file"
        )
    try:
        if module_part.endswith(".py") or "/" in module_part or "\\" in module_part:
            path = _find(module_part, base_dir)
            if not path.is_file():
                raise DataError(f"model {label}: {path} does not exist: fix the path in external = {entry!r}")
            name = "robustmri_external_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise DataError(f"model {label}: {path} cannot be imported as a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_part)
    except (DataError, ConfigError):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of user code becomes one line
        raise ConfigError(f"model {label}: importing {module_part!r} failed ({type(exc).__name__}: {exc}); fix the module") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"model {label}: {module_part!r} has no callable {attr!r}")
    return fn


def load_external_module(entry: str, base_dir: str | Path | None = None, label: str = "external") -> nn.Module:
    """The ``nn.Module`` named by ``entry`` (see the module docstring), in eval mode on the CPU."""
    base = Path(base_dir) if base_dir is not None else None
    if entry.startswith("object:"):
        name = entry[len("object:"):]
        if name not in _OBJECTS:
            raise ConfigError(f"model {label}: {entry!r} names no module given to robustmri.benchmark() in this process")
        module = _OBJECTS[name]
    elif _is_torchscript_path(entry):
        module = _load_torchscript(_find(entry, base), label)
    else:
        fn = _import_callable(entry, base, label)
        try:
            module = fn()
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"model {label}: calling {entry!r} failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model {label}: {entry!r} gave a {type(module).__name__}, not a torch.nn.Module")
    return module.eval()


def external_digest(module: nn.Module, entry: str, base_dir: str | Path | None = None) -> str:
    """sha256 (16 hex digits) of what an external model's results depend on: its parameters and
    buffers (names, dtypes, shapes, values) and its code (the TorchScript archive, or the source
    file of the module's class). Cached cells are reused only while it holds."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        if not isinstance(t, Tensor):
            continue
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    base = Path(base_dir) if base_dir is not None else None
    if _is_torchscript_path(entry):
        h.update(_find(entry, base).read_bytes())
    else:
        try:
            src = inspect.getsourcefile(type(module))
        except TypeError:
            src = None
        if src and Path(src).is_file():
            h.update(Path(src).read_bytes())
    return h.hexdigest()[:16]


class ExternalModel(TranslationModel):
    """A user's module as a :class:`TranslationModel`: [0, 1] in and out, never trained.

    ``module``: maps (B, C, H, W) to (B, 1, H, W) in ``io_range``; ``label``: its name in the
    results (used in every error message)."""

    name = "external"

    def __init__(self, module: nn.Module, label: str, io_range: str = "unit", in_channels: int = 1, image_size: int = 64) -> None:
        super().__init__(in_channels=in_channels, image_size=image_size)
        if io_range not in IO_RANGES:
            raise ConfigError(f"model {label}: io_range must be one of {', '.join(IO_RANGES)}, got {io_range!r}")
        self.module = module.eval()
        self.label = label
        self.io_range = io_range

    def _to_io(self, x: Tensor) -> Tensor:
        lo, hi = IO_RANGES[self.io_range]
        return x if self.io_range == "unit" else x * (hi - lo) + lo

    def _from_io(self, y: Tensor) -> Tensor:
        lo, hi = IO_RANGES[self.io_range]
        return y if self.io_range == "unit" else (y - lo) / (hi - lo)

    def _call(self, x: Tensor) -> Tensor:
        try:
            y = self.module(self._to_io(x))
        except Exception as exc:  # noqa: BLE001 - a failure inside user code becomes one line
            raise ConfigError(
                f"model {self.label} failed on a {tuple(x.shape)} batch ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "it must map (B, C, H, W) to (B, 1, H, W)"
            ) from None
        if not isinstance(y, Tensor):
            raise ConfigError(f"model {self.label} returned a {type(y).__name__}; it must return one (B, 1, H, W) tensor")
        expected = (x.shape[0], 1, x.shape[2], x.shape[3])
        if tuple(y.shape) != expected:
            raise ConfigError(f"model {self.label} returned shape {tuple(y.shape)} for input {tuple(x.shape)}; expected {expected}")
        return y

    def translate(self, source: Tensor, generator: RandomSource | None = None, target: Tensor | None = None) -> Tensor:
        return self._from_io(self._call(source).to(source.dtype))

    def check_range(self, source: Tensor) -> None:
        """Run the module on clean ``source`` (B, C, H, W) in [0, 1] and refuse an output that is
        not finite or leaves ``io_range`` by more than :data:`RANGE_SLACK` of its span."""
        with torch.no_grad():
            y = self._call(source)
        if not bool(torch.isfinite(y).all()):
            raise ConfigError(f"model {self.label} returned NaN or inf on clean test slices")
        lo, hi = IO_RANGES[self.io_range]
        slack = RANGE_SLACK * (hi - lo)
        ymin, ymax = float(y.min()), float(y.max())
        if ymin < lo - slack or ymax > hi + slack:
            other = "symmetric" if self.io_range == "unit" else "unit"
            raise ConfigError(
                f"model {self.label} returned intensities in [{ymin:.3g}, {ymax:.3g}] on clean test slices, outside its "
                f"io_range {self.io_range!r} [{lo:g}, {hi:g}]: set io_range = {other!r} if that is what it uses, or rescale its output"
            )

    def has_gradients(self, source: Tensor) -> bool:
        """True when the output's gradient with respect to ``source`` (B, C, H, W) exists and is
        not all zero (a module run under ``torch.no_grad`` or detached inside has none)."""
        x = source[:1].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            y = self._call(x)
            if not y.requires_grad:
                return False
            (g,) = torch.autograd.grad(y.float().sum(), x, allow_unused=True)
        return g is not None and bool(torch.isfinite(g).all()) and bool((g != 0).any())

    def optimizers(self) -> dict[str, OptimizerSpec]:
        raise ConfigError(f"model {self.label} is external: robustmri scores it, never trains it")

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor]:
        raise ConfigError(f"model {self.label} is external: robustmri scores it, never trains it")
