"""The `clipsearch` command: a thin typer layer over `clipsearch.library.Library`.

Exit status follows grep: 0 results, 1 none, 2 error (one line on stderr, no traceback).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from .errors import ClipsearchError

try:
    from typer._click.exceptions import UsageError
except ImportError:  # typer releases that use click itself
    from click.exceptions import UsageError

EXIT_NONE, EXIT_ERROR, EXIT_INTERRUPTED = 1, 2, 130
HTML_SUFFIXES = (".html", ".htm")


class _Group(TyperGroup):
    """Turns user-facing errors into one stderr line and grep-like exit codes."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _optional_html_value(args))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            command = f" {ctx.invoked_subcommand}" if ctx.invoked_subcommand else ""
            error(f"{exc.format_message()} (see `clipsearch{command} --help`)")
            raise typer.Exit(EXIT_ERROR) from None
        except ClipsearchError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except sqlite3.DatabaseError as exc:  # damaged, full or unreadable library database
            from .store import explain

            error(str(explain(exc)))
            raise typer.Exit(EXIT_ERROR) from None
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


def _optional_html_value(args: list[str]) -> list[str]:
    """`--html` takes an optional FILE: a bare `--html` becomes `--html=` (the default page)."""
    out = list(args)
    for i, arg in enumerate(out):
        following = out[i + 1] if i + 1 < len(out) else ""
        if arg == "--html" and not following.lower().endswith(HTML_SUFFIXES):
            out[i] = "--html="
    return out


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
NoWaitOpt = Annotated[
    bool, typer.Option("--no-wait", help="Fail at once if another process is writing")
]


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
        bool,
        typer.Option(
            "--no-default-excludes", help="Also index hidden, trash and thumbnail folders"
        ),
    ] = False,
    raw_too: Annotated[
        bool, typer.Option("--raw-too", help="Index RAW files even beside a same-named JPEG/HEIC")
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
    no_wait: NoWaitOpt = False,
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
    with lib, _progress() as progress, _sigterm_as_interrupt():
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


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """`kill` (SIGTERM) stops an index run as Ctrl-C does: what was embedded stays saved."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def _rate_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed or 0:5.1f} img/s")

    return RateColumn()


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
            _rate_column(),
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


HtmlOpt = Annotated[
    str | None,
    typer.Option(
        "--html",
        help="Write an HTML gallery (to FILE.html, or a page in the library) and print its path",
        show_default=False,
    ),
]
OpenOpt = Annotated[bool, typer.Option("--open", help="Open the HTML gallery in the browser")]
PreviewOpt = Annotated[bool, typer.Option("--preview", help="Inline thumbnails (kitty, iTerm2)")]
TopOpt = Annotated[int, typer.Option("--top", "-n", help="How many results")]
MinScoreOpt = Annotated[float | None, typer.Option(help="Drop results scoring below this cosine")]
WithinOpt = Annotated[Path | None, typer.Option("--in", help="Only photos under this folder")]
JsonlOpt = Annotated[bool, typer.Option("--jsonl", help="One JSON object per line")]
NullOpt = Annotated[bool, typer.Option("-0", "--null", help="NUL-separated paths")]


@app.command()
def query(
    terms: Annotated[
        list[str] | None,
        typer.Argument(help="Text, or ./image.jpg; weights like 2:cat; - reads queries from stdin"),
    ] = None,
    add: Annotated[
        list[str] | None, typer.Option("--add", "-a", help="Add a concept (repeatable)")
    ] = None,
    sub: Annotated[
        list[str] | None, typer.Option("--sub", "-s", help="Subtract a concept (repeatable)")
    ] = None,
    top: TopOpt = 10,
    min_score: MinScoreOpt = None,
    within: WithinOpt = None,
    exact: Annotated[
        bool, typer.Option("--exact", help="Exact search even in a large library")
    ] = False,
    json_out: JsonOpt = False,
    jsonl: JsonlOpt = False,
    null: NullOpt = False,
    html: HtmlOpt = None,
    open_page: OpenOpt = False,
    preview: PreviewOpt = False,
    device: DeviceOpt = "auto",
    library: LibraryOpt = None,
) -> None:
    """Print the photos best matching the query, best first."""
    options = dict(top=top, min_score=min_score, within=within, exact=exact)
    with _open(library, device=device) as lib:
        if terms == ["-"]:
            found = _batch_queries(lib, options, json_out, jsonl)
        else:
            hits = lib.search(*(terms or []), add=add or [], sub=sub or [], **options)
            title = " ".join(
                [*(terms or []), *(f"+{a}" for a in add or []), *(f"-{x}" for x in sub or [])]
            )
            _show_hits(lib, hits, title, json_out, jsonl, null, html, open_page, preview)
            found = bool(hits)
    if not found:
        raise typer.Exit(EXIT_NONE)


def _batch_queries(lib, options: dict, json_out: bool, jsonl: bool) -> bool:
    """`query -`: one query per line on stdin, the model loaded once for all of them."""
    from .render import hit_record, pick_mode, write_hits, write_json

    answers = []
    for line in sys.stdin:
        text = line.rstrip("\n")
        if text.strip():
            answers.append((text, lib.search(text, **options)))
    if json_out:
        write_json([{"query": q, "results": [hit_record(h) for h in hits]} for q, hits in answers])
    elif jsonl:
        from .render import write_json_lines

        write_json_lines([{"query": q, **hit_record(h)} for q, hits in answers for h in hits])
    else:
        mode = pick_mode(False, False, False, sys.stdout.isatty())
        for n, (_, hits) in enumerate(answers):
            if n:
                sys.stdout.buffer.write(b"\n")
            write_hits(hits, mode)
    return any(hits for _, hits in answers)


def _show_hits(lib, hits, title, json_out, jsonl, null, html, open_page, preview) -> None:
    """Every output mode of `query` and `similar`."""
    from .render import pick_mode, write_hits

    if html is not None or open_page:
        _gallery(lib, title, html, open_page, hits=hits)
        return
    if preview and sys.stdout.isatty():
        from .preview import render_previews

        render_previews(hits, sys.stdout, os.environ, lib.thumbnails(), True)
        return
    write_hits(hits, pick_mode(json_out, jsonl, null, sys.stdout.isatty()))


def _gallery(lib, title: str, html: str | None, open_page: bool, **content) -> None:
    from .gallery import write_gallery

    out = Path(html) if html else lib.directory / "galleries" / f"{_slug(title)}.html"
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    page = write_gallery(
        content.get("hits", []),
        out,
        title=title,
        thumbs=lib.thumbnails(),
        groups=content.get("groups"),
    )
    sys.stdout.buffer.write(os.fsencode(str(page.absolute())) + b"\n")
    sys.stdout.flush()
    if open_page:
        import webbrowser

        webbrowser.open(page.absolute().as_uri())


def _slug(title: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "results"


@app.command()
def similar(
    image: Annotated[Path, typer.Argument(help="An image file, in the library or not")],
    top: TopOpt = 10,
    min_score: MinScoreOpt = None,
    within: WithinOpt = None,
    json_out: JsonOpt = False,
    jsonl: JsonlOpt = False,
    null: NullOpt = False,
    html: HtmlOpt = None,
    open_page: OpenOpt = False,
    preview: PreviewOpt = False,
    device: DeviceOpt = "auto",
    library: LibraryOpt = None,
) -> None:
    """Print the photos that look most like IMAGE (the image itself left out)."""
    with _open(library, device=device) as lib:
        hits = lib.similar(str(image), top=top, min_score=min_score, within=within)
        _show_hits(lib, hits, f"like {image.name}", json_out, jsonl, null, html, open_page, preview)
    if not hits:
        raise typer.Exit(EXIT_NONE)


@app.command()
def dupes(
    directory: Annotated[
        Path | None, typer.Argument(help="Only photos under this folder [default: all]")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Cosine at or above which photos count as duplicates [default: 0.95]"),
    ] = None,
    json_out: JsonOpt = False,
    jsonl: JsonlOpt = False,
    null: NullOpt = False,
    html: HtmlOpt = None,
    open_page: OpenOpt = False,
    library: LibraryOpt = None,
) -> None:
    """Print groups of near-duplicate photos (re-encodes, resizes, crops, bursts), best first."""
    from .library import DUPE_THRESHOLD
    from .render import pick_mode, write_groups

    cutoff = DUPE_THRESHOLD if threshold is None else threshold
    if not -1.0 <= cutoff <= 1.0:
        raise ClipsearchError(f"--threshold is a cosine between -1 and 1, not {cutoff}")
    with _open(library) as lib:
        groups = lib.duplicates(directory, cutoff)
        if html is not None or open_page:
            _gallery(lib, "near-duplicates", html, open_page, groups=groups)
        else:
            write_groups(groups, pick_mode(json_out, jsonl, null, sys.stdout.isatty()))
    if not groups:
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
    no_wait: NoWaitOpt = False,
    library: LibraryOpt = None,
) -> None:
    """Drop a root folder and every photo indexed under it."""
    with _open(library) as lib:
        removed = lib.forget(directory, wait=not no_wait, on_wait=error)
    sys.stderr.write(f"forgot {directory}: {removed} images removed from the library\n")


@app.command()
def repair(no_wait: NoWaitOpt = False, library: LibraryOpt = None) -> None:
    """Check the library and fix what is damaged: salvage the database, rebuild the index."""
    from .library import default_home
    from .repair import repair_library

    for line in repair_library(library or default_home(), wait=not no_wait, on_wait=error):
        sys.stdout.write(line + "\n")


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


# --- bench ---------------------------------------------------------------------------------

bench_app = typer.Typer(
    no_args_is_help=True, help="Measure indexing and search speed on this machine"
)
app.add_typer(bench_app, name="bench", help="Measure indexing and search speed on this machine")


@bench_app.command("index")
def bench_index(
    synthetic: Annotated[
        int | None,
        typer.Option(min=1, help="Generate N photo-like JPEGs (or N copies of --images)"),
    ] = None,
    megapixels: Annotated[
        float | None,
        typer.Option(help="Size of generated photos [default: 12]; with --images, resize to it"),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            exists=True, file_okay=False, help="Your photos, as they are unless --megapixels"
        ),
    ] = None,
    model: Annotated[str, typer.Option(help="open_clip architecture")] = "ViT-B-32",
    pretrained: Annotated[
        str | None, typer.Option(help="Tag or checkpoint FILE [default: random weights]")
    ] = None,
    device: DeviceOpt = "auto",
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images per forward pass")] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="Keep generated photos and library here [default: temp]")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Index speed against the model alone and a naive pipeline, plus draft-decode fidelity."""
    from .benchindex import print_table, run

    result = run(synthetic, megapixels, images, model, pretrained, device, batch_size, workdir)
    if json_out:
        from .render import write_json

        write_json(result)
    else:
        print_table(result)


@bench_app.command("query")
def bench_query(
    vectors: Annotated[int, typer.Option(min=1, help="Synthetic library size (clustered vectors)")],
    model: Annotated[str, typer.Option(help="Architecture whose text tower answers")] = "ViT-B-32",
    cold_runs: Annotated[int, typer.Option(min=1, help="Fresh CLI processes to time")] = 5,
    workdir: Annotated[Path | None, typer.Option(help="Build the library here")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Search speed and recall in memory, and Enter-to-exit time of real `query` processes."""
    from .benchlatency import run

    result = run(vectors, model=model, cold_runs=cold_runs, workdir=workdir)
    if json_out:
        from .render import write_json

        write_json(result)
    else:
        for key, value in result.items():
            sys.stdout.write(f"{key:>16}  {value}\n")
