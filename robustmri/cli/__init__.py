"""The ``robustmri`` command line: a thin typer layer over the Python API.

Each command group lives in its own module and registers itself on :data:`app`. Errors caused by
user input (:class:`robustmri.errors.RobustMRIError`) are printed as one line on stderr and end the
process with exit status 2.

The top layer: it may import any module; nothing imports it (docs/architecture.md).
"""

from __future__ import annotations

import sys

import typer

from robustmri import __version__
from robustmri.errors import RobustMRIError, os_error_message

app = typer.Typer(
    name="robustmri",
    help="Robustness benchmark for multi-contrast MRI translation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help as written: "[slurm]" stays literal, wrapped lines join into one paragraph
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"robustmri {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Robustness benchmark for multi-contrast MRI translation."""


def _register_groups() -> None:
    # Each module adds its command group to `app` when imported (one line per group).
    import importlib

    for module in _GROUP_MODULES:
        importlib.import_module(module)


_GROUP_MODULES: tuple[str, ...] = (
    "robustmri.cli.data",
    "robustmri.cli.perturb",
    "robustmri.cli.prepare",
    "robustmri.cli.train",
    "robustmri.cli.evaluate",
    "robustmri.cli.bench",
    "robustmri.cli.report",
    "robustmri.cli.translate",
    "robustmri.cli.leaderboard",
)
_register_groups()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit status."""
    from robustmri.threads import configure_threads

    configure_threads()  # the CPUs this process was given (SLURM, affinity, cgroup), not every core
    try:
        status = app(args=argv, standalone_mode=False)
        if isinstance(status, int):  # click returns the code of typer.Exit in non-standalone mode
            if status == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into exit code 130 itself
                typer.echo(INTERRUPTED, err=True)
            return status
    except RobustMRIError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except typer.Exit as exc:  # --version, --help
        return int(exc.exit_code or 0)
    except KeyboardInterrupt:
        typer.echo(INTERRUPTED, err=True)
        return 130
    except OSError as exc:  # no space, read-only, permission, a file where a folder is needed, ...
        typer.echo(f"error: {os_error_message(exc)}", err=True)
        return 2
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        usage, abort = _click_exceptions()
        if isinstance(exc, usage):  # a bad option or argument: one line, exit 2
            where = getattr(getattr(exc, "ctx", None), "command_path", None) or "robustmri"
            message = " ".join(exc.format_message().split())
            typer.echo(f"error: {message} (see `{where} --help`)", err=True)
            return 2
        if isinstance(exc, abort):  # click's form of Ctrl-C
            typer.echo(INTERRUPTED, err=True)
            return 130
        raise
    return 0


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """click's usage-error and abort classes, from typer's vendored copy (typer >= 0.2x raises
    those) and from a separately installed click (older typer raises these): both, whichever exist,
    since another package may install click beside a typer that does not use it."""
    modules = []
    try:
        from typer import _click as vendored  # type: ignore[attr-defined]

        modules.append(vendored)
    except ImportError:
        pass
    try:
        import click

        modules.append(click)
    except ImportError:
        pass
    usage = tuple(m.exceptions.ClickException for m in modules)
    abort = tuple(a for m in modules if (a := getattr(m.exceptions, "Abort", None)) is not None)
    return usage, abort


INTERRUPTED = (
    "interrupted: every finished checkpoint, cell and prepared file is kept; run the same command again to "
    "continue where it stopped"
)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
