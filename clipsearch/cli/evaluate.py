"""`clipsearch eval`: recall of the library's model on your own captioned photos."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .options import DeviceOpt, JsonOpt, LibraryOpt
from .output import open_library, print_json


def evaluate(
    captions: Annotated[
        Path, typer.Argument(help="`image,caption` CSV (as Flickr8k's) or COCO captions JSON")
    ],
    images: Annotated[
        Path | None,
        typer.Option(
            help="Folder the image names are under [default: images/ beside CAPTIONS, "
            "else CAPTIONS' folder]",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="open_clip model, for a new library [default: ViT-B-32]")
    ] = None,
    pretrained: Annotated[
        str | None, typer.Option(help="Pretrained tag or checkpoint FILE, for a new library")
    ] = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    library: LibraryOpt = None,
) -> None:
    """Recall@1/5/10 and median rank, text→image and image→text, of the library's model on a
    captioned set: measure candidate models on your own photos (one --library per model).

    Example: clipsearch eval captions.csv --images ~/eval-photos --library /tmp/eval-b32
    """
    lib = open_library(library, model=model, pretrained=pretrained, device=device, create=True)
    with lib:
        report = lib.evaluate(captions, images)
    if json_out:
        print_json(report)
    else:
        _print_table(report)


def _print_table(report: dict) -> None:
    out = sys.stdout
    out.write(
        f"{report['model']} ({report['pretrained']}): {report['images']} images, "
        f"{report['captions']} captions\n"
    )
    out.write(f"{'':15}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'median rank':>13}\n")
    for key, label in (("text_to_image", "text → image"), ("image_to_text", "image → text")):
        row = report[key]
        cells = "".join(f"{100 * row[f'recall@{k}']:7.1f}%" for k in (1, 5, 10))
        out.write(f"{label:15}{cells}{row['median_rank']:13g}\n")
