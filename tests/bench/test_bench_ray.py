"""`clipsearch bench index --ray`: a Ray run's figures and the driver's commit rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY
from typer.testing import CliRunner

from clipsearch.bench.distributed import commit_rate
from clipsearch.cli import app
from clipsearch.storage.db import Store


def test_commit_rate_stores_every_vector_once(tmp_path: Path) -> None:
    result = commit_rate(tmp_path / "lib", TINY, 16, 600)
    assert result["commit_vectors"] == 600 and result["commit_vps"] > 0
    assert 0 < result["commit_sqlite_seconds"] <= result["commit_seconds"]
    store = Store.open(tmp_path / "lib")
    try:
        assert store.count() == 600 and store.dim() == 16
    finally:
        store.close()


@pytest.mark.slow  # starts its own local Ray runtime in the benchmark's child process
def test_bench_index_on_ray_reports_workers_and_the_commit_rate(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    args = ["bench", "index", "--synthetic", "4", "--megapixels", "0.3", "--model", TINY]
    args += ["--ray", "local", "--workers", "1", "--commit-vectors", "500", "--json"]
    result = CliRunner().invoke(app, [*args, "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 4 and report["workers"] == report["workers_used"] == 1
    assert report["end_to_end_ips"] > 0 and report["commit_vps"] > 0
    assert [w["images"] for w in report["per_worker"]] == [4]
    assert report["gpus_one_driver_feeds"] == round(report["commit_vps"] / 1500, 1)
    assert report["mean_file_mb"] > 0 and report["gpu_reads_gb_per_s"] > 0
