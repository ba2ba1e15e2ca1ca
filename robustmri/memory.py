"""Refuse memory requests that cannot fit, before any work starts: a one-line error with the size
the request would need, instead of an allocator failure deep inside numpy or torch."""

from __future__ import annotations

import os

from robustmri.errors import ConfigError

GIB = 1024.0**3


def available_memory_bytes() -> int:
    """Memory the process could get now: ``MemAvailable`` of /proc/meminfo, else the physical
    memory (sysconf), else a very large number (no check possible)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        return 1 << 62


def check_fits(nbytes: float, what: str, fix: str) -> None:
    """Raise :class:`ConfigError` when ``nbytes`` exceed the memory available now.

    ``what`` names the request ("simulating one subject at 100000x100000x32"), ``fix`` says what to
    change; the message states both sizes in GiB."""
    have = available_memory_bytes()
    if nbytes > have:
        raise ConfigError(f"{what} needs about {nbytes / GIB:,.1f} GiB of memory, more than the {have / GIB:,.1f} GiB "
                          f"available: {fix}")
