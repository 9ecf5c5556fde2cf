"""`clipsearch bench query`: the output's shape and internal consistency (never its timings)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from clipsearch.cli import app


@pytest.mark.slow
def test_bench_query_reports_every_figure(tmp_path):
    args = ["bench", "query", "--vectors", "3000", "--model", "clipsearch-tiny"]
    result = CliRunner().invoke(
        app, [*args, "--cold-runs", "1", "--workdir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    times = ("cold_query_s", "warm_query_s", "cold_image_query_s", "warm_image_query_s")
    for key in ("exact_ms", "ann_ms", "index_ram_mb", "image_decode_s", *times):
        assert isinstance(figures[key], float) and figures[key] >= 0, key
    assert figures["index_type"] == "flat"  # 3000 vectors are below the crossover
    assert figures["recall_at_10"] == 1.0  # flat search is exact
    assert figures["vectors"] == 3000 and figures["model"] == "clipsearch-tiny"
    assert list(tmp_path.iterdir()) == []  # the synthetic library is cleaned up
    for name in ("date", "broad_date", "place", "camera"):
        assert isinstance(figures[f"{name}_filter_ms"], float), name
        assert 0 < figures[f"{name}_filter_share"] < 1, name  # each filter keeps some, not all
    assert figures["broad_date_filter_share"] > 0.5 > figures["date_filter_share"]
    assert isinstance(figures["metadata_load_ms"], float)
