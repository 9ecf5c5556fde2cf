"""The `clipsearch` command: a thin typer layer over `clipsearch.library.Library`.

One module per command group (index, search, dupes, manage, serve, bench); this one builds the app,
and turns every user-facing error into one stderr line and a grep-like exit status (0 results,
1 none, 2 error), in one place.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import typing
from pathlib import Path

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import EXIT_ERROR, EXIT_INTERRUPTED, ClipsearchError, warn
from . import bench, dupes, evaluate, index, manage, models, search, serve

# typer vendors click privately and exports only BadParameter; its base class is the
# UsageError that every command-line parsing error raises.
_UsageError = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "UsageError")
_ClickException = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "ClickException")
_Abort = typer.Abort
# Plain help (no Rich): Rich read a hand-written "[default: ...]" as markup and dropped it,
# and printed a <bool> or <list[str]> type beside every option.
_HELP = {"rich_markup_mode": None, "context_settings": {"help_option_names": ["-h", "--help"]}}


class _Group(TyperGroup):
    """Turns user-facing errors into one stderr line and grep-like exit codes."""

    def main(self, args=None, prog_name=None, **extra):
        """Errors found before any command runs (an unknown command or option) get the same
        one line and exit 2 as every other error, not click's multi-line usage box."""
        try:
            code = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except _UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `clipsearch`: the help
                exc.show()
                sys.exit(exc.exit_code)
            command = f" {exc.ctx.info_name}" if exc.ctx and exc.ctx.parent else ""
            warn(f"{exc.format_message()} (see `clipsearch{command} --help`)")
            sys.exit(EXIT_ERROR)
        except _ClickException as exc:
            warn(exc.format_message())
            sys.exit(exc.exit_code)
        except _Abort:
            warn("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _library_after_command(args))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _UsageError as exc:
            command = f" {ctx.invoked_subcommand}" if ctx.invoked_subcommand else ""
            warn(f"{exc.format_message()} (see `clipsearch{command} --help`)")
            raise typer.Exit(EXIT_ERROR) from None
        except ClipsearchError as exc:
            warn(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            warn("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except sqlite3.DatabaseError as exc:  # damaged, full or unreadable library database
            from ..storage.db import explain

            warn(str(explain(exc)))
            raise typer.Exit(EXIT_ERROR) from None
        except BrokenPipeError:
            _silence_broken_pipe()
            raise typer.Exit(0) from None


def _plain_metavar(param, ctx) -> str:
    """A value's kind in click's words (TEXT, INTEGER, PATH), none for an argument, whose
    name already says it: typer 0.29 printed <str>, <list[Path]> and <bool>."""
    if getattr(param, "param_type_name", "") == "argument":
        return ""
    annotation = param.type_descriptor.annotation
    if typing.get_origin(annotation) is list:
        (annotation,) = typing.get_args(annotation)
    names = {str: "TEXT", int: "INTEGER", float: "FLOAT", bool: "", Path: "PATH"}
    return names.get(annotation, getattr(annotation, "__name__", "VALUE").upper())


def _use_plain_metavars() -> None:
    from typer import core

    parameter = getattr(core, "_TyperParameter", None)
    if parameter is not None and hasattr(parameter, "display_type"):
        parameter.display_type = _plain_metavar


_use_plain_metavars()


def _library_after_command(args: list[str]) -> list[str]:
    """`clipsearch --library X status` works as `clipsearch status --library X`: a library
    option before the command is moved after it (before any `--`)."""
    before, moved, i = [], [], 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        if args[i] == "--library" and i + 1 < len(args):
            moved += args[i : i + 2]
            i += 2
            continue
        if args[i].startswith("--library="):
            moved.append(args[i])
        else:
            before.append(args[i])
        i += 1
    if not moved:
        return args
    rest = args[i:]
    cut = rest.index("--") if "--" in rest else len(rest)
    return [*before, *rest[:cut], *moved, *rest[cut:]]


def _silence_broken_pipe() -> None:
    """The reader went away (`| head`): stop quietly, as grep does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"clipsearch {__version__}\n")
        raise typer.Exit(0)


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    **_HELP,
    help="Search your photos with words: `clipsearch index ~/Photos`, then `clipsearch query dog`",
)


@app.callback()
def _top(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version"
    ),
) -> None:
    """Search your photos with words: `clipsearch index ~/Photos`, then `clipsearch query dog`"""


app.command()(index.index)
app.command()(search.query)
app.command()(search.similar)
app.command()(dupes.dupes)
app.command()(manage.status)
app.command()(manage.forget)
app.command()(manage.move)
app.command()(manage.purge)
app.command()(manage.repair)
app.command()(serve.serve)
app.command("eval")(evaluate.evaluate)
app.command()(models.models)
bench_app = typer.Typer(
    no_args_is_help=True, help="Measure indexing and search speed on this machine", **_HELP
)
bench_app.command("index")(bench.bench_index)
bench_app.command("query")(bench.bench_query)
bench_app.command("serve")(bench.bench_serve)
app.add_typer(bench_app, name="bench", help="Measure indexing and search speed on this machine")


def main() -> None:
    """Run the CLI; once torch is loaded, skip its slow interpreter teardown (seconds here)."""
    try:
        app()
    except SystemExit as done:
        if "torch" not in sys.modules or not isinstance(done.code, int | None):
            raise
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(done.code or 0)
