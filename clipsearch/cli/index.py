"""`clipsearch index`: embed new and changed photos, with a progress bar on a terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_INTERRUPTED, ClipsearchError, warn
from .options import (
    BackendOpt,
    DeviceOpt,
    JsonOpt,
    LibraryOpt,
    NoWaitOpt,
    PrecisionOpt,
    RayOpt,
    ShipFilesOpt,
    WorkersOpt,
)
from .output import open_library, print_json


def index(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Folders to index [default: known roots]")
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            help="gitignore-style pattern to skip (repeatable; remembered per root, '' clears)"
        ),
    ] = None,
    default_excludes: Annotated[
        bool | None,
        typer.Option(
            "--default-excludes/--no-default-excludes",
            help="Skip hidden, trash and thumbnail folders (remembered per root) [default: on]",
            show_default=False,
        ),
    ] = None,
    raw_too: Annotated[
        bool | None,
        typer.Option(
            "--raw-too/--no-raw-too",
            help="Index RAW files even beside a same-named JPEG/HEIC (remembered per root)",
            show_default=False,
        ),
    ] = None,
    max_megapixels: Annotated[
        str | None,
        typer.Option(
            help="Skip larger images (decompression bombs): a number, 'auto' or 'none' "
            "(remembered per root) [default: auto]",
            show_default=False,
        ),
    ] = None,
    retry_errors: Annotated[
        bool,
        typer.Option("--retry-errors", help="Try again every file that failed before"),
    ] = False,
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
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images per forward pass")] = None,
    date_fallback: Annotated[
        str,
        typer.Option(
            help="Capture time of photos that record none: 'none', or 'mtime' (the file's)"
        ),
    ] = "none",
    follow_links: Annotated[
        bool,
        typer.Option(
            "--follow-links",
            help="Follow symlinked folders that lead outside the folders being indexed",
        ),
    ] = False,
    remove_offline: Annotated[
        bool,
        typer.Option(
            "--remove-offline",
            help="Drop the photos of roots that are offline (missing, empty, unmounted)",
        ),
    ] = False,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
    ray_ship_files: ShipFilesOpt = False,
    no_wait: NoWaitOpt = False,
    json_out: JsonOpt = False,
    library: LibraryOpt = None,
) -> None:
    """Embed new and changed photos under PATHS; later runs only touch what changed.

    Example: clipsearch index ~/Photos --exclude 'Screenshots/'
    """
    from ..indexing.stopping import stop_on_signals
    from ..output.summary import human_summary

    ray_options = ray_options_for(ray, workers, ray_ship_files)

    lib = open_library(
        library,
        model=model,
        pretrained=pretrained,
        device=device,
        batch_size=batch_size,
        create=True,
        backend=backend,
        precision=precision,
    )
    with lib, _progress() as progress, stop_on_signals():
        report = lib.index(
            paths or [],
            excludes=exclude,
            default_excludes=default_excludes,
            raw_too=raw_too,
            max_megapixels=max_megapixels,
            retry_errors=retry_errors,
            progress=progress,
            wait=not no_wait,
            on_wait=warn,
            date_fallback=date_fallback,
            remove_offline=remove_offline,
            ray=ray_options,
            follow_links=follow_links,
        )
    if progress is None:  # on a terminal each was shown as it happened, above the bar
        for path, reason in report.new_problems:
            warn(f"skipped {path}: {reason}")  # warn escapes the whole line
    if json_out:
        print_json(report.as_dict())
    else:
        sys.stderr.write(human_summary(report) + "\n")
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)


def ray_options_for(address: str | None, workers: int | None, ship_files: bool):
    """The Ray options, checked before any work (even creating the library): Ray must be
    installed and a cluster's address must answer."""
    if address is None:
        if workers is not None or ship_files:
            raise ClipsearchError("--workers and --ray-ship-files go with --ray ADDRESS")
        return None
    from ..indexing.distributed import RayOptions, preflight

    options = RayOptions(address, workers, ship_files)
    preflight(options)
    return options


def _rate_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            if task.total is None:
                return Text("")
            return Text(f"{task.speed or 0:5.1f} img/s, skipped {task.fields['skipped']}")

    return RateColumn()


class _progress:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise.

    It shows from the first second what the run is doing (looking for photos, loading the
    model: 10-14 s on a first run), then the bar with elapsed time, img/s and the skipped
    count; each skipped file's reason is printed above the bar as it happens."""

    def __enter__(self):
        if not sys.stderr.isatty():
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _rate_column(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=_stderr_console(),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("starting", total=None, skipped=0)
        self.count = 0
        return self

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(self.task, description="embedding", total=total, completed=done)

    def stage(self, text: str) -> None:
        self.bar.update(self.task, description=text)

    def skipped(self, path: str, reason: str) -> None:
        from ..output.text import safe_for_terminal

        self.count += 1
        self.bar.update(self.task, skipped=self.count)
        self.bar.console.print(
            "clipsearch: " + safe_for_terminal(f"skipped {path}: {reason}"),
            markup=False,
            highlight=False,
        )

    def __exit__(self, *exc: object) -> None:
        if hasattr(self, "bar"):
            self.bar.stop()


def _stderr_console():
    from ..output.text import console

    return console(stderr=True)
