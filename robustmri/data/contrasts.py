"""Canonical MRI contrast names and the aliases used by IXI, BraTS and robustmri's own layout.

Canonical names (lower case): ``t1``, ``t1ce``, ``t2``, ``pd``, ``flair``; ``seg`` and ``mask``
are label volumes, not contrasts.
"""

from __future__ import annotations

from robustmri.errors import ConfigError

CONTRASTS: tuple[str, ...] = ("t1", "t1ce", "t2", "pd", "flair")
"""Canonical contrast names robustmri understands."""

LABEL_VOLUMES: tuple[str, ...] = ("seg", "mask")

ALIASES: dict[str, str] = {
    "t1": "t1",
    "t1w": "t1",
    "t1n": "t1",  # BraTS 2023 native T1
    "t1ce": "t1ce",
    "t1c": "t1ce",  # BraTS 2023
    "t1gd": "t1ce",
    "t2": "t2",
    "t2w": "t2",  # BraTS 2023
    "pd": "pd",
    "pdw": "pd",
    "flair": "flair",
    "t2f": "flair",  # BraTS 2023
    "t2flair": "flair",
}


def canonical_contrast(name: str) -> str:
    """Return the canonical name of contrast ``name`` (case-insensitive, aliases accepted).

    Raises :class:`ConfigError` naming the valid choices for an unknown name.
    """
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key in ALIASES:
        return ALIASES[key]
    valid = ", ".join(CONTRASTS)
    raise ConfigError(
        f"unknown contrast {name!r}: use one of {valid} (aliases: t1n, t1c, t2w, t2f, t1w, pdw)"
    )
