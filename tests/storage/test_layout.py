"""Every file a Layout names is one clipsearch recognises as its own.

A name missing from `is_own_name` makes a library with that file look like a foreign folder:
`roots.json` (issue 17) was refused that way by the adoption check (issue 18) once the
database was lost, until both were merged and this test was written.
"""

from pathlib import Path

from clipsearch.storage.layout import Layout, is_own_name


def test_every_named_file_counts_as_the_library_s_own(tmp_path):
    layout = Layout(tmp_path)
    properties = [name for name, value in vars(Layout).items() if isinstance(value, property)]
    paths = [getattr(layout, name) for name in properties]
    paths += [layout.index_file(3), layout.meta_columns(3, 1), layout.damaged_backup("x")]
    paths += layout.wal_files(layout.db)

    foreign = [p.name for p in paths if not is_own_name(Path(p).name)]

    assert len(paths) >= 10
    assert foreign == []


def test_a_stranger_is_not_own():
    assert not is_own_name("taxes.pdf")
    assert not is_own_name("roots.json.bak")
