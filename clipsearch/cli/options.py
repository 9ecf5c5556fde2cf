"""Options several commands share, declared once so their names and help agree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

LibraryOpt = Annotated[
    Path | None,
    typer.Option(
        "--library",
        envvar="CLIPSEARCH_HOME",
        help="Library folder [default: $CLIPSEARCH_HOME or ~/.local/share/clipsearch]",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        help="auto, cpu, cuda or mps (queries: auto and cpu use the fast CPU export, "
        "cuda or mps the model on that device)"
    ),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend", help="Engine of the image tower when indexing: auto, onnxruntime or torch"
    ),
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help="auto (fastest of full fidelity), fp32, int8 (onnxruntime, opt-in), bf16, fp16",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]
NoWaitOpt = Annotated[
    bool, typer.Option("--no-wait", help="Fail at once if another process is writing")
]
HtmlOpt = Annotated[
    str | None,
    typer.Option(
        "--html",
        metavar="FILE",
        help="Write an HTML gallery to FILE (.html added if missing) and print its path",
        show_default=False,
    ),
]
GalleryOpt = Annotated[
    bool,
    typer.Option("--gallery", help="Write an HTML gallery page inside the library, print its path"),
]
StandaloneOpt = Annotated[
    bool,
    typer.Option(
        "--standalone",
        help="Put the gallery's thumbnails inside the page (2x density), so it can be sent "
        "or served; prints its size",
    ),
]
OpenOpt = Annotated[bool, typer.Option("--open", help="Open the HTML gallery in the browser")]
PreviewOpt = Annotated[bool, typer.Option("--preview", help="Inline thumbnails (kitty, iTerm2)")]
TopOpt = Annotated[int, typer.Option("--top", "-n", help="How many results")]
MinScoreOpt = Annotated[float | None, typer.Option(help="Drop results scoring below this cosine")]
WithinOpt = Annotated[Path | None, typer.Option("--in", help="Only photos under this folder")]
JsonlOpt = Annotated[bool, typer.Option("--jsonl", help="One JSON object per line")]
NullOpt = Annotated[bool, typer.Option("-0", "--null", help="NUL-separated paths")]
AfterOpt = Annotated[
    str | None,
    typer.Option(help="Taken on or after: 2024, 2024-06, 2024-06-15 or 2024-06-15T18:00"),
]
BeforeOpt = Annotated[
    str | None, typer.Option(help="Taken on or before (inclusive): same forms as --after")
]
NearOpt = Annotated[str | None, typer.Option(help="Taken near a place: a town name or LAT,LON")]
KmOpt = Annotated[
    float | None, typer.Option(help="Radius around --near in km [default: 25]", show_default=False)
]
CameraOpt = Annotated[
    str | None, typer.Option(help="Camera make or model contains this (any case)")
]
SortOpt = Annotated[str, typer.Option(help="Order: score, date (oldest first) or -date")]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Embed on a Ray cluster: local, auto, HOST:PORT or ray://HOST:10001 "
        "(needs clipsearch[ray])",
        show_default=False,
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Ray workers (one model each) [default: one per GPU, else per CPU]"),
]
ShipFilesOpt = Annotated[
    bool,
    typer.Option(
        "--ray-ship-files",
        help="Send the photos' bytes to the Ray workers (when they cannot read the same path)",
    ),
]
