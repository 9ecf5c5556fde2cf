"""`clipsearch bench index`, `bench query` and `bench serve`: measure this machine, print JSON
or a table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .options import BackendOpt, DeviceOpt, JsonOpt, PrecisionOpt, RayOpt, ShipFilesOpt, WorkersOpt
from .output import print_json


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
    backfill: Annotated[
        int, typer.Option(min=1, help="Photos whose metadata backfill is timed")
    ] = 10_000,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
    ray_ship_files: ShipFilesOpt = False,
    commit_vectors: Annotated[
        int, typer.Option(min=1, help="With --ray: vectors whose commit by the driver is timed")
    ] = 50_000,
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Index speed against the model alone and a naive pipeline, plus draft-decode fidelity;
    the backend's fidelity to open_clip; with --ray, a Ray run's speed and the driver's commit
    rate.

    Example: clipsearch bench index --synthetic 200 --megapixels 12 --json
    """
    from ..bench.index import print_table, run
    from .index import ray_options_for

    options = ray_options_for(ray, workers, ray_ship_files)
    if options is not None:
        from ..bench import distributed

        result = distributed.run(
            options,
            synthetic,
            megapixels,
            images,
            model,
            pretrained,
            device,
            batch_size,
            workdir,
            commit_vectors,
        )
        if json_out:
            print_json(result)
        else:
            distributed.print_table(result)
        return

    result = run(
        synthetic,
        megapixels,
        images,
        model,
        pretrained,
        device,
        batch_size,
        workdir,
        backfill,
        backend,
        precision,
    )
    if json_out:
        print_json(result)
    else:
        print_table(result)


def bench_query(
    vectors: Annotated[int, typer.Option(min=1, help="Synthetic library size (clustered vectors)")],
    model: Annotated[str, typer.Option(help="Architecture whose text tower answers")] = "ViT-B-32",
    cold_runs: Annotated[int, typer.Option(min=1, help="Fresh CLI processes to time")] = 5,
    workdir: Annotated[Path | None, typer.Option(help="Build the library here")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Search speed and recall in memory, and Enter-to-exit time of real `query` processes.

    Example: clipsearch bench query --vectors 100000 --json
    """
    from ..bench.query import run

    result = run(vectors, model=model, cold_runs=cold_runs, workdir=workdir)
    if json_out:
        print_json(result)
    else:
        for key, value in result.items():
            sys.stdout.write(f"{key:>16}  {value}\n")


def bench_serve(
    vectors: Annotated[
        int, typer.Option(min=31, help="Synthetic library size (clustered vectors)")
    ],
    model: Annotated[str, typer.Option(help="Architecture whose towers answer")] = "ViT-B-32",
    queries: Annotated[int, typer.Option(min=1, help="Distinct text queries to time")] = 50,
    drops: Annotated[int, typer.Option(min=0, help="Dropped 12 MP photos to time")] = 5,
    workdir: Annotated[Path | None, typer.Option(help="Build the library here")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Query time of a running `clipsearch serve` over HTTP (needs clipsearch[serve]).

    Example: clipsearch bench serve --vectors 100000 --json
    """
    from ..bench.serve import run
    from ..web.server import require_web_libraries

    require_web_libraries()
    result = run(vectors, model=model, queries=queries, drops=drops, workdir=workdir)
    if json_out:
        print_json(result)
    else:
        for key, value in result.items():
            sys.stdout.write(f"{key:>18}  {value}\n")
