"""The ``v2v`` command line: a Typer app built from the plugin manager.

Commands come from ``v2v_register_commands`` hooks (the built-ins are ordinary plugins). One handler turns a
:class:`~v2vcli.errors.V2VError` into ``Error: ...`` on stderr with exit 1; usage errors are one ``Error:`` line
too, with exit 2; a traceback is shown only with ``--verbose``. Command bodies import torch themselves so ``v2v --help`` stays fast.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import traceback
from typing import Any, cast

import typer
from typer.core import TyperGroup

from v2vcli.registry import get_registry

# Exceptions the command framework handles itself (usage errors exit 2, --help, Exit). Newer typer vendors click
# and bases them on TyperException; older typer re-exports click's.
_FRAMEWORK_EXC: tuple[type[BaseException], ...] = (typer.Exit, typer.Abort)
if hasattr(typer, "TyperException"):
    _FRAMEWORK_EXC += (typer.TyperException,)
try:  # pragma: no cover - only with typer releases that depend on click
    import click as _click

    _FRAMEWORK_EXC += (_click.ClickException, _click.exceptions.Exit, _click.Abort)
except ImportError:
    pass

from v2vcli.errors import V2VError

__all__ = ["build_app", "main", "state"]

log = logging.getLogger(__name__)

_NO_SPACE = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}

state: dict[str, Any] = {"verbose": False, "quiet": False}


class V2VGroup(TyperGroup):
    """Root group with v2v's single error handler."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Usage errors (unknown command or option, bad option value) as one ``Error:`` line, exit 2, instead of
        the framework's usage box: every failure of every command reads the same way."""
        # mypy: *args could also carry a positional standalone_mode; every caller passes it by keyword
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except _FRAMEWORK_EXC as exc:
            message = getattr(exc, "format_message", None)
            if not callable(message):  # Abort (e.g. EOF at a prompt)
                typer.echo("Error: aborted", err=True)
                sys.exit(1)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            typer.echo(f"Error: {message()}{hint}", err=True)
            sys.exit(int(getattr(exc, "exit_code", 1)))
        sys.exit(rv if isinstance(rv, int) else 0)  # non-standalone mode returns Exit codes (--help: 0)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _FRAMEWORK_EXC:
            raise
        except V2VError as exc:
            _report(exc, exc.exit_code)
        except KeyboardInterrupt:
            typer.echo("Error: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # unexpected: still one line unless --verbose
            code = _no_space_errno(exc)
            if code is not None:
                name = getattr(exc, "filename", None)
                where = f" writing '{name}'" if name else ""
                _report(V2VError(f"no space left{where} ({os.strerror(code)}): free disk space (or raise the "
                                 f"file-size limit) and run the command again; finished work is kept"), 1)
            if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                name = getattr(exc, "filename", None)
                where = f" '{name}'" if name else " a file"
                _report(V2VError(f"cannot write{where}: {os.strerror(exc.errno or errno.EACCES).lower()}; pass an "
                                 f"output location you can write to, or fix its permissions"), 1)
            _report(exc, 1, unexpected=True)
        return None


def _no_space_errno(exc: BaseException) -> int | None:
    """ENOSPC/EFBIG/EDQUOT behind ``exc``: an OSError, or a library error that wraps one in its message
    (safetensors: "I/O error: File too large (os error 27)")."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in _NO_SPACE:
            return int(cast(int, cur.errno))  # not None: it is in _NO_SPACE
        m = re.search(r"os error (\d+)", str(cur))
        if m and int(m.group(1)) in _NO_SPACE:
            return int(m.group(1))
        cur = cur.__cause__ or cur.__context__
    return None


def _report(exc: BaseException, code: int, unexpected: bool = False) -> None:
    verbose = state["verbose"] or "--verbose" in sys.argv or "-v" in sys.argv[1:2]
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    message = str(exc) or type(exc).__name__
    if "\n" in message:  # a library's multi-line text (torch appends a C++ trace): the Error is one line
        message = next((line.strip() for line in message.splitlines() if line.strip()), type(exc).__name__)
    if unexpected:
        message = f"{type(exc).__name__}: {message}" + ("" if verbose else " (run with --verbose for details)")
    error_dir, rank = os.environ.get("V2V_ERROR_DIR"), os.environ.get("RANK")
    if error_dir and rank is not None:
        # A worker of `--gpus N`: the launcher prints the one Error line (with the first failed rank's message);
        # the worker says what happened to it without the prefix, so restarted attempts stay visible.
        try:
            with open(os.path.join(error_dir, f"rank{int(rank)}.txt"), "w", encoding="utf-8") as f:
                f.write(message)
        except (OSError, ValueError):
            log.debug("could not leave rank %s's error in %s; the launcher will point at this output", rank, error_dir)
        typer.echo(f"rank {rank} failed: {message}", err=True)
        sys.exit(code)
    typer.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_v2v", False):
            root.removeHandler(handler)
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_path=verbose, show_time=False, markup=False)
    handler._v2v = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    logging.getLogger("v2vcli").setLevel(level)
    logging.getLogger("v2v_plugins").setLevel(level)
    root.setLevel(level if verbose else logging.WARNING)


def build_app(registry: Any = None) -> typer.Typer:
    """Build the Typer app; ``registry`` defaults to the process-wide one."""
    if registry is None:
        registry = get_registry()
    # add_completion: `v2v --install-completion` (bash, zsh, fish, PowerShell) and `--show-completion`
    app = typer.Typer(cls=V2VGroup, no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
                      help="v2v: video-to-video synthesis (vid2vid) toolkit: extract, train, synthesize, "
                           "predict, evaluate.")

    @app.callback()
    def root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging and full tracebacks."),
             quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors.")) -> None:
        """v2v: video-to-video synthesis toolkit."""
        state["verbose"], state["quiet"] = verbose, quiet
        _setup_logging(verbose, quiet)

    registry.register_commands(app)
    return app


def main(argv: list[str] | None = None, prog_name: str = "v2v") -> None:
    """Console-script entry point (also ``python -m v2vcli``)."""
    try:
        app = build_app()
    except V2VError as exc:  # a broken plugin must still give one line
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    app(args=argv, prog_name=prog_name)
