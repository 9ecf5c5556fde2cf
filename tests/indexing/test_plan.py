"""Planning on its own: what a scan means for the library, decided without writing anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipsearch.indexing.plan import plan_changes
from clipsearch.indexing.scan import FoundFile, ScanResult, fingerprint
from clipsearch.model.spec import ModelSpec
from clipsearch.storage.db import Store


@pytest.fixture()
def store(tmp_path: Path):
    s = Store.open(tmp_path / "lib", create=True)
    s.record_model(ModelSpec("tiny", "/w.safetensors"), 2)
    yield s
    s.close()


def found(path: Path) -> FoundFile:
    st = path.stat()
    return FoundFile(str(path), st.st_size, st.st_mtime_ns)


def remember(store: Store, f: FoundFile) -> None:
    store.begin()
    store.add(f.path, f.size, f.mtime_ns, fingerprint(f.path, f.size), np.ones(2, np.float32))
    store.commit()


def test_new_unchanged_changed_and_removed(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("same", "edited", "gone"):
        (root / f"{name}.jpg").write_bytes(name.encode() * 10)
        remember(store, found(root / f"{name}.jpg"))
    gone_id = store.known_files([str(root)])[str(root / "gone.jpg")].id
    (root / "gone.jpg").unlink()
    (root / "edited.jpg").write_bytes(b"edited again, longer")
    (root / "new.jpg").write_bytes(b"brand new")
    scan = ScanResult(files=[found(root / n) for n in ("same.jpg", "edited.jpg", "new.jpg")])
    plan = plan_changes(store, [str(root)], scan)
    assert sorted(Path(f.path).name for f in plan.embed) == ["edited.jpg", "new.jpg"]
    assert plan.unchanged == 1 and plan.moves == [] and plan.removed_ids == [gone_id]
    assert store.count() == 3  # planning writes nothing


def test_a_moved_file_keeps_its_row_when_content_matches(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "old").mkdir(parents=True)
    (root / "old" / "a.jpg").write_bytes(b"x" * 5000)
    remember(store, found(root / "old" / "a.jpg"))
    (root / "new").mkdir()
    (root / "old" / "a.jpg").rename(root / "new" / "a.jpg")
    (root / "new" / "b.jpg").write_bytes(b"y" * 5000)  # same size, other content: not a move
    scan = ScanResult(files=[found(root / "new" / "a.jpg"), found(root / "new" / "b.jpg")])
    plan = plan_changes(store, [str(root)], scan)
    ((known, moved_to),) = plan.moves
    assert moved_to.path == str(root / "new" / "a.jpg") and known.size == 5000
    assert [Path(f.path).name for f in plan.embed] == ["b.jpg"] and plan.removed_ids == []


def test_what_an_unreadable_folder_hides_is_kept(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "a.jpg").write_bytes(b"a")
    remember(store, found(root / "locked" / "a.jpg"))
    scan = ScanResult(problems=[(str(root / "locked"), "cannot open folder: Permission denied")])
    plan = plan_changes(store, [str(root)], scan)
    assert plan.removed_ids == [] and plan.embed == []
    assert plan.new_problems == scan.problems


def test_known_problems_are_not_reported_again(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    bad = root / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    f = found(bad)
    store.begin()
    store.record_error(f.path, f.size, f.mtime_ns, "cannot decode image")
    store.record_error(str(root / "vanished.jpg"), 1, 1, "cannot decode image")
    store.commit()
    plan = plan_changes(store, [str(root)], ScanResult(files=[f]))
    assert plan.embed == [] and plan.known_problems == 1
    assert plan.stale_errors == [str(root / "vanished.jpg")]
    bad.write_bytes(b"changed, so try again")
    plan = plan_changes(store, [str(root)], ScanResult(files=[found(bad)]))
    assert [x.path for x in plan.embed] == [str(bad)]
