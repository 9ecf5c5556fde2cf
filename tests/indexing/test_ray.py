"""`index --ray`: embedding on a Ray runtime gives the library a local run gives, survives a
lost worker and a killed driver, and without Ray installed says which extra to install.

One local Ray runtime serves the whole module (127.0.0.1 only, no dashboard, 2 CPUs): it
starts in a few seconds, and each run joins it instead of starting its own.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TINY, committed, photo, run_cli
from typer.testing import CliRunner

from clipsearch import Library
from clipsearch.cli import app
from clipsearch.errors import ClipsearchError
from clipsearch.indexing.distributed import RayOptions, call_size, cores_per_gpu, placement
from clipsearch.storage import vectorindex
from clipsearch.storage.db import Store
from clipsearch.storage.vectorfile import current_index

PHOTOS = 24
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray") / "Photos"
    root.mkdir()
    for i in range(PHOTOS):
        photo(300 + i, size=(96, 72)).save(root / f"p{i:02d}.jpg", quality=85)
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    return root


def index(library: Path, photos: Path, checkpoint: Path, ray=None, **kwargs):
    with Library.open(
        library, model=TINY, pretrained=str(checkpoint), device="cpu", batch_size=4, create=True
    ) as lib:
        return lib.index([photos], ray=ray, **kwargs)


def contents(library: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every indexed path with its vector, and every remembered failure with its reason."""
    store = Store.open(library)
    try:
        ids, vectors = store.all_vectors(store.ids())
        paths = store.paths_for(ids)
        errors = {p: e.reason for p, e in store.known_errors().items()}
        return {paths[int(i)]: v for i, v in zip(ids, vectors, strict=True)}, errors
    finally:
        store.close()


def check_complete(library: Path, photos: Path) -> None:
    """Every photo indexed once, the bad file remembered, the vector index agreeing."""
    vectors, errors = contents(library)
    expected = {str(p) for p in photos.glob("p*.jpg")}
    assert set(vectors) == expected
    assert set(errors) == {str(photos / "broken.jpg")}
    conn = sqlite3.connect(f"file:{library / 'library.db'}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        paths = [row[0] for row in conn.execute("SELECT path FROM files")]
    finally:
        conn.close()
    assert len(paths) == len(set(paths)) == PHOTOS, "a photo is indexed twice"
    store = Store.open(library)
    try:
        index, _ = current_index(store)
        assert np.array_equal(np.sort(vectorindex.ids_of(index)), store.ids())
    finally:
        store.close()


@pytest.mark.slow
def test_a_ray_index_equals_a_local_index(ray_runtime, photos, tiny_checkpoint, tmp_path):
    local = index(tmp_path / "local", photos, tiny_checkpoint)
    on_ray = index(tmp_path / "ray", photos, tiny_checkpoint, ray=RayOptions("local", 2))
    shipped = index(tmp_path / "shipped", photos, tiny_checkpoint, ray=RayOptions("local", 2, True))
    want, want_errors = contents(tmp_path / "local")
    assert len(want) == PHOTOS and local.ray is None
    for library, report in ((tmp_path / "ray", on_ray), (tmp_path / "shipped", shipped)):
        got, errors = contents(library)
        assert sorted(got) == sorted(want)
        assert errors == want_errors == {str(photos / "broken.jpg"): "not an image file"}
        assert all(np.abs(got[p] - want[p]).max() < 1e-4 for p in want)
        assert report.indexed == PHOTOS and report.skipped == 1
        assert report.new_problems == local.new_problems
        assert report.ray["workers"] == 2 and report.ray["workers_used"] >= 1
        assert sum(w["images"] for w in report.ray["per_worker"]) == PHOTOS + 1
        assert all(w["img_per_s"] > 0 for w in report.ray["per_worker"])
        check_complete(library, photos)
    again = index(tmp_path / "ray", photos, tiny_checkpoint, ray=RayOptions("local"))
    assert again.indexed == 0 and again.unchanged == PHOTOS and again.ray is None


@pytest.mark.slow
def test_a_worker_killed_mid_run_costs_nothing(ray_runtime, photos, tiny_checkpoint, tmp_path):
    """ray.kill of an embedding actor while batches are in flight: Ray restarts it and
    retries its batch; the library ends complete, nothing in it twice."""
    killed = []

    def kill_one_worker(done: int, total: int) -> None:
        if done and not killed:
            # Ray Data holds the handles; Ray's state API would need the dashboard.
            handle = ray_runtime.actor.ActorHandle
            actors = [a for a in gc.get_objects() if type(a) is handle and "EmbedWorker" in repr(a)]
            assert actors
            ray_runtime.kill(actors[0], no_restart=False)
            killed.append(actors[0])

    library = tmp_path / "library"
    report = index(
        library, photos, tiny_checkpoint, ray=RayOptions("local", 2), progress=kill_one_worker
    )
    assert killed and not report.interrupted
    assert report.indexed == PHOTOS  # Ray retried the lost batch on the restarted actor
    check_complete(library, photos)
    rerun = index(library, photos, tiny_checkpoint, ray=RayOptions("local", 2))
    assert rerun.indexed == 0 and rerun.unchanged == PHOTOS
    check_complete(library, photos)


@pytest.mark.slow
def test_a_killed_driver_loses_at_most_a_commit_interval(
    ray_runtime, photos, tiny_checkpoint, tmp_path
):
    """SIGKILL of `clipsearch index --ray HOST:PORT` after its first commit; the re-run
    finishes the library and re-embeds none of what was committed."""
    address = ray_runtime.get_runtime_context().gcs_address
    library = tmp_path / "library"
    args = ["index", str(photos), "--library", str(library), "--model", TINY]
    args += ["--pretrained", str(tiny_checkpoint), "--batch-size", "2", "--ray", address]
    env = {**os.environ, "CLIPSEARCH_COMMIT_SECONDS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipsearch", *args, "--workers", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.monotonic() + 240
    while committed(library) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    kept = committed(library)
    assert proc.returncode == -signal.SIGKILL and kept > 0, proc.stderr.read().decode()
    rerun = run_cli(*args, "--workers", "1", "--json", env=env)
    assert rerun.returncode == 0, rerun.stderr.decode()
    check_complete(library, photos)
    assert b'"indexed": ' + str(PHOTOS - kept).encode() in rerun.stdout


runner = CliRunner()


def test_without_ray_it_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if clipsearch[ray] were not installed
    result = runner.invoke(
        app, ["index", str(tmp_path), "--library", str(tmp_path / "lib"), "--ray", "local"]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "clipsearch: --ray needs Ray, an optional extra: pip install 'clipsearch[ray]'\n"
    )
    assert not (tmp_path / "lib").exists()


def test_an_address_that_does_not_answer_is_one_line_at_once(tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = runner.invoke(
        app,
        ["index", str(tmp_path), "--library", str(tmp_path / "lib"), "--ray", f"127.0.0.1:{port}"],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"clipsearch: cannot reach a Ray cluster at '127.0.0.1:{port}'")
    assert result.stderr.count("\n") == 1 and "ray start --head" in result.stderr
    assert not (tmp_path / "lib" / "library.db").exists()


def test_workers_need_ray(tmp_path):
    result = runner.invoke(app, ["index", str(tmp_path), "--workers", "2"])
    assert result.exit_code == 2
    assert result.stderr == "clipsearch: --workers and --ray-ship-files go with --ray ADDRESS\n"


def test_a_local_index_never_imports_ray():
    script = (
        "import sys\n"
        "import clipsearch.cli.index, clipsearch.cli.bench, clipsearch.library\n"
        "import clipsearch.indexing.run\n"
        "sys.stderr.write(str(sorted(m for m in sys.modules if m.split('.')[0] == 'ray')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env)
    assert result.stderr == b"[]"


def test_every_worker_gets_files():
    assert call_size(files=1000, wanted=32, workers=4) == 32
    assert call_size(files=120, wanted=32, workers=2) == 15  # four calls each
    assert call_size(files=1, wanted=256, workers=8) == 1


def test_the_cluster_config_in_the_repo_is_one_ray_accepts():
    ray = pytest.importorskip("ray")
    import json

    import jsonschema
    import yaml

    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    config = yaml.safe_load((REPO / "deploy" / "ray-cluster.yaml").read_text())
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    assert any("/mnt/nas" in command for command in config["setup_commands"])


def test_gpu_actors_get_the_cores_of_their_own_node():
    head = {"Alive": True, "Resources": {"CPU": 8.0}}
    big = {"Alive": True, "Resources": {"CPU": 32.0, "GPU": 1.0}}
    quad = {"Alive": True, "Resources": {"CPU": 48.0, "GPU": 4.0}}
    gone = {"Alive": False, "Resources": {"CPU": 2.0, "GPU": 1.0}}
    assert cores_per_gpu([head, big, gone]) == 31
    assert cores_per_gpu([head, big, quad]) == 11
    assert cores_per_gpu([head]) == 1


def fake_cluster(cpus: int, gpus: int) -> SimpleNamespace:
    node = {"Alive": True, "Resources": {"CPU": float(cpus), "GPU": float(gpus)}}
    return SimpleNamespace(
        cluster_resources=lambda: {"CPU": float(cpus), "GPU": float(gpus)}, nodes=lambda: [node]
    )


def test_placement_is_one_actor_per_gpu_else_per_core():
    assert placement(fake_cluster(16, 2), "auto", None) == ("cuda", 1, 7, 2)
    assert placement(fake_cluster(16, 2), "cpu", None) == ("cpu", 0, 1, 16)
    assert placement(fake_cluster(2, 0), "auto", 1) == ("cpu", 0, 1, 1)
    with pytest.raises(ClipsearchError, match="--workers 3 needs 3 GPUs; the cluster has 2"):
        placement(fake_cluster(16, 2), "auto", 3)
    with pytest.raises(ClipsearchError, match="no GPUs"):
        placement(fake_cluster(4, 0), "cuda", None)
    with pytest.raises(ClipsearchError, match="--workers 5 needs 5 CPUs; the cluster has 4"):
        placement(fake_cluster(4, 0), "cpu", 5)
