"""User-facing errors.

Every problem caused by user input (a missing file, a corrupt NIfTI, a wrong contrast name, a bad
option) is raised as a :class:`RobustMRIError` subclass whose message is ONE line that names the
offending file or value and the fix. The CLI prints it as ``error: <message>`` and exits with
status 2; the Python API lets it propagate so callers can catch it.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable


class RobustMRIError(Exception):
    """Base class for errors caused by user input or configuration (CLI exit code 2)."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        # Keep messages to one line: multi-line text from deep inside a library is folded.
        super().__init__(" ".join(str(message).split()))


class DataError(RobustMRIError):
    """A data file or folder is missing, unreadable, corrupt or inconsistent."""


class ConfigError(RobustMRIError):
    """An option, preset or configuration value is invalid."""


class DependencyError(RobustMRIError):
    """An optional or required third-party package is missing or broken."""


def did_you_mean(given: object, allowed: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the allowed names nearest to ``given`` (one name or several),
    or ``""`` when none is close; appended to one-line errors about unknown names and keys."""
    import difflib

    names = [str(g) for g in (given if isinstance(given, (set, frozenset, list, tuple)) else [given])]
    pool = [str(a) for a in allowed]
    hints = []
    for name in names:
        match = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
        if match and match[0] != name:
            hints.append(f"{name!r} -> {match[0]!r}" if len(names) > 1 else repr(match[0]))
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


_OS_FIXES: dict[int, str] = {
    errno.ENOSPC: "free some space or write to another folder (--out, --cache)",
    errno.EDQUOT: "free some space or write to another folder (--out, --cache)",
    errno.EROFS: "the file system is read-only: write to another folder (--out, --cache)",
    errno.EACCES: "you may not write there: choose a folder you own (--out, --cache) or fix its permissions",
    errno.EPERM: "you may not write there: choose a folder you own (--out, --cache) or fix its permissions",
    errno.ENOTDIR: "a file stands where a folder is needed: choose another --out or move the file",
    errno.EEXIST: "a file stands where a folder is needed: choose another --out or move the file",
    errno.EISDIR: "a folder stands where a file is needed: choose another path",
    errno.ENOENT: "the path does not exist: check it",
}


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error: what failed, on which path, and the fix (for a full
    disk, with the free space left and the promise that the same command resumes)."""
    where = exc.filename if exc.filename is not None else "a file"
    fix = _OS_FIXES.get(exc.errno or -1, "check the path and the disk, then run the command again")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        from robustmri.atomic import free_bytes

        free = free_bytes(where) if exc.filename is not None else None
        left = f" ({free / 2**20:.1f} MiB free there)" if free is not None else ""
        return (f"{where}: {exc.strerror or 'No space left on device'}{left}: {fix}, then run the same command again: "
                "every finished checkpoint, cell and prepared file is kept and it continues where it stopped")
    return f"{where}: {exc.strerror or exc}: {fix}"
