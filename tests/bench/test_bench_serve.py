"""`clipsearch bench serve`: the output's shape and internal consistency (never its timings)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from clipsearch.cli import app

pytest.importorskip("uvicorn")


@pytest.mark.slow
def test_bench_serve_reports_every_figure(tmp_path):
    args = ["bench", "serve", "--vectors", "500", "--model", "clipsearch-tiny"]
    result = CliRunner().invoke(
        app, [*args, "--queries", "3", "--drops", "1", "--workdir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    times = ("first_query_ms", "query_ms", "query_p95_ms", "query_max_ms", "library_search_ms")
    times += ("library_search_cpu_ms", "query_cpu_ms")
    for key in (*times, "first_drop_ms", "drop_query_ms", "server_start_s", "server_rss_mb"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert figures["query_ms"] <= figures["query_p95_ms"] <= figures["query_max_ms"]
    assert figures["http_overhead_ms"] == round(
        figures["query_ms"] - figures["library_search_ms"], 2
    )
    cli = figures["cli_warm_query_ms"]
    assert isinstance(cli, float) and cli >= 0
    assert figures["ratio_to_cli_warm"] == (round(figures["query_ms"] / cli, 2) if cli else None)
    assert figures["vectors"] == 500 and figures["model"] == "clipsearch-tiny"
    assert figures["queries"] == 3 and figures["drops"] == 1
    assert list(tmp_path.iterdir()) == []  # the synthetic library is cleaned up


def test_bench_serve_refuses_a_library_smaller_than_a_page(tmp_path):
    result = CliRunner().invoke(app, ["bench", "serve", "--vectors", "10", "--json"])
    assert result.exit_code == 2
    assert "--vectors" in result.stderr and "31" in result.stderr


def test_the_servers_cpu_time_counts_less_than_a_clock_tick():
    """/proc's stat counts CPU in 10 ms ticks: two quick queries once measured 0.0 ms in a
    clean-clone run.  A millisecond of work must show."""
    import os
    import time
    from types import SimpleNamespace

    from clipsearch.bench.serve import Client

    client = Client(SimpleNamespace(pid=os.getpid()), "http://127.0.0.1:1/", 0.0)
    before = client.cpu_seconds()
    end = time.thread_time() + 0.001
    while time.thread_time() < end:
        pass
    assert 0.0005 < client.cpu_seconds() - before < 1.0
