"""The `clipsearch` command: a thin typer layer over `clipsearch.library.Library`.

Exit status follows grep: 0 results, 1 none, 2 error (one line on stderr, no traceback).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from .errors import ClipsearchError

EXIT_NONE, EXIT_ERROR, EXIT_INTERRUPTED = 1, 2, 130


class _Group(TyperGroup):
    """Turns user-facing errors into one stderr line and grep-like exit codes."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ClipsearchError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            _silence_broken_pipe()
            raise typer.Exit(0) from None


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Search your photos with words: `clipsearch index ~/Photos`, then `clipsearch query dog`",
)


def error(message: str) -> None:
    sys.stderr.write(f"clipsearch: {message}\n")


def _silence_broken_pipe() -> None:
    """The reader went away (`| head`): stop quietly, as grep does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


LibraryOpt = Annotated[
    Path | None,
    typer.Option(
        "--library",
        envvar="CLIPSEARCH_HOME",
        help="Library folder [default: $CLIPSEARCH_HOME or ~/.local/share/clipsearch]",
        show_default=False,
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or mps")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _open(library: Path | None, **kwargs):
    from .library import Library

    return Library.open(library, **kwargs)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


@app.command()
def index(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Folders to index [default: known roots]")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="gitignore-style pattern to skip (repeatable)")
    ] = None,
    no_default_excludes: Annotated[
        bool, typer.Option(help="Also index hidden, trash and thumbnail folders")
    ] = False,
    raw_too: Annotated[
        bool, typer.Option(help="Index RAW files even beside a same-named JPEG/HEIC")
    ] = False,
    max_megapixels: Annotated[
        str,
        typer.Option(help="Skip larger images (decompression bombs): a number, 'auto' or 'none'"),
    ] = "auto",
    model: Annotated[
        str | None, typer.Option(help="open_clip model for a new library [default: ViT-B-32]")
    ] = None,
    pretrained: Annotated[
        str | None,
        typer.Option(
            help="Pretrained tag, or a local checkpoint FILE [default: laion2b_s34b_b79k]"
        ),
    ] = None,
    device: DeviceOpt = "auto",
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images per forward pass")] = None,
    no_wait: Annotated[
        bool, typer.Option(help="Fail at once if another process is writing")
    ] = False,
    json_out: JsonOpt = False,
    library: LibraryOpt = None,
) -> None:
    """Embed new and changed photos under PATHS; later runs only touch what changed."""
    from .summary import human_summary

    lib = _open(
        library,
        model=model,
        pretrained=pretrained,
        device=device,
        batch_size=batch_size,
        create=True,
    )
    with lib, _progress() as progress:
        report = lib.index(
            paths or [],
            excludes=exclude or [],
            default_excludes=not no_default_excludes,
            raw_too=raw_too,
            max_pixels=_max_pixels(max_megapixels),
            progress=progress,
            wait=not no_wait,
            on_wait=error,
        )
    for path, reason in report.new_problems:
        from .render import safe_for_terminal

        error(f"skipped {safe_for_terminal(path)}: {reason}")
    if json_out:
        from .render import write_json

        write_json(report.as_dict())
    else:
        sys.stderr.write(human_summary(report) + "\n")
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)


def _max_pixels(value: str) -> int | None:
    from .imaging import default_max_pixels

    if value == "none":
        return None
    if value == "auto":
        return default_max_pixels()
    try:
        megapixels = float(value)
    except ValueError:
        raise ClipsearchError(
            f"--max-megapixels takes a number, 'auto' or 'none', not {value!r}"
        ) from None
    if megapixels <= 0:
        raise ClipsearchError("--max-megapixels must be positive")
    return int(megapixels * 1_000_000)


class _progress:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise."""

    def __enter__(self):
        if not sys.stderr.isatty():
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("embedding"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.speed:>5.1f} img/s" if True else ""),
            TimeRemainingColumn(),
            console=_stderr_console(),
            transient=True,
        )
        self.bar.start()
        self.task = None
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.bar.add_task("embedding", total=total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if hasattr(self, "bar"):
            self.bar.stop()


@app.command()
def query(
    terms: Annotated[
        list[str] | None, typer.Argument(help="Text, or ./image.jpg; weights like 2:cat")
    ] = None,
    add: Annotated[
        list[str] | None, typer.Option("--add", "-a", help="Add a concept (repeatable)")
    ] = None,
    sub: Annotated[
        list[str] | None, typer.Option("--sub", "-s", help="Subtract a concept (repeatable)")
    ] = None,
    top: Annotated[int, typer.Option("--top", "-n", help="How many results")] = 10,
    min_score: Annotated[
        float | None, typer.Option(help="Drop results scoring below this cosine")
    ] = None,
    within: Annotated[
        Path | None, typer.Option("--in", help="Only photos under this folder")
    ] = None,
    json_out: JsonOpt = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per line")] = False,
    null: Annotated[bool, typer.Option("-0", "--null", help="NUL-separated paths")] = False,
    device: DeviceOpt = "auto",
    library: LibraryOpt = None,
) -> None:
    """Print the photos best matching the query, best first."""
    from .render import pick_mode, write_hits

    with _open(library, device=device) as lib:
        hits = lib.search(
            *(terms or []),
            add=add or [],
            sub=sub or [],
            top=top,
            min_score=min_score,
            within=within,
        )
    write_hits(hits, pick_mode(json_out, jsonl, null, sys.stdout.isatty()))
    if not hits:
        raise typer.Exit(EXIT_NONE)


@app.command()
def status(
    errors: Annotated[
        bool, typer.Option("--errors", help="List the files that could not be indexed")
    ] = False,
    json_out: JsonOpt = False,
    library: LibraryOpt = None,
) -> None:
    """Show the library: roots, image count, model, size on disk, last update."""
    from .summary import print_errors, print_status

    with _open(library) as lib:
        value = [e.__dict__ for e in lib.errors()] if errors else lib.status()
    if json_out:
        from .render import write_json

        write_json(value)
    elif errors:
        print_errors(value)
    else:
        print_status(value)


@app.command()
def forget(
    directory: Annotated[Path, typer.Argument(help="A root folder given to `index` before")],
    no_wait: Annotated[
        bool, typer.Option(help="Fail at once if another process is writing")
    ] = False,
    library: LibraryOpt = None,
) -> None:
    """Drop a root folder and every photo indexed under it."""
    with _open(library) as lib:
        removed = lib.forget(directory, wait=not no_wait, on_wait=error)
    sys.stderr.write(f"forgot {directory}: {removed} images removed from the library\n")


def main() -> None:
    app()
