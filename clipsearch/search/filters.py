"""When, where and with what: the filters a query can carry besides its words.

Times compare as the camera's wall clock (a photo taken at 23:30 in Lisbon on 14 June counts
as 14 June wherever it is searched from).  A bound that names its own UTC offset is compared
with the instant of photos that record theirs.  Places are circles: a bounding box that an
SQLite index can answer, then the exact great-circle distance.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ClipsearchError

DEFAULT_KM = 25.0
KM_PER_DEGREE = 111.195  # along a meridian, on the mean-radius sphere
SORTS = ("score", "date", "-date")
EPOCH = dt.datetime(1970, 1, 1)


@dataclass(frozen=True)
class TimeBound:
    """One end of a time range: a wall-clock moment, and the UTC offset the user gave."""

    moment: dt.datetime
    offset_minutes: int | None = None

    @property
    def seconds(self) -> int:
        """Wall-clock seconds since 1970, the form the library stores capture times in."""
        return wall_seconds(self.moment)


@dataclass(frozen=True)
class Circle:
    lat: float
    lon: float
    km: float
    label: str

    def box(self) -> tuple[float, float, list[tuple[float, float]]]:
        """(lat_min, lat_max, longitude ranges): two ranges where the circle crosses 180°,
        all longitudes where it reaches a pole."""
        dlat = self.km / KM_PER_DEGREE
        low, high = max(-90.0, self.lat - dlat), min(90.0, self.lat + dlat)
        widest = max(abs(low), abs(high))
        if widest >= 89.999:
            return low, high, [(-180.0, 180.0)]
        dlon = self.km / (KM_PER_DEGREE * math.cos(math.radians(widest)))
        if dlon >= 180:
            return low, high, [(-180.0, 180.0)]
        west, east = self.lon - dlon, self.lon + dlon
        if west < -180:
            return low, high, [(west + 360, 180.0), (-180.0, east)]
        if east > 180:
            return low, high, [(west, 180.0), (-180.0, east - 360)]
        return low, high, [(west, east)]


@dataclass(frozen=True)
class Filters:
    """What a photo must satisfy to be a result; all None is no filter at all."""

    after: TimeBound | None = None
    before: TimeBound | None = None
    near: Circle | None = None
    camera: str | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.after, self.before, self.near, self.camera))


NONE = Filters()


def wall_seconds(moment: dt.datetime) -> int:
    """A naive wall-clock time as seconds since 1970 (no zone applied)."""
    return int((moment.replace(tzinfo=None) - EPOCH).total_seconds())


def from_wall_seconds(seconds: int) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=int(seconds))


_DAY = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")


def parse_bound(text: str, *, end: bool, option: str = "--after") -> TimeBound:
    """'2024', '2024-06', '2024-06-15' or an ISO time; a year, month or day stands for its
    first second as a start and its last second as an end, so both ends are inclusive."""
    value = text.strip()
    day = _DAY.match(value)
    try:
        if day:
            return TimeBound(_period_edge(*day.groups(), end=end))
        moment = dt.datetime.fromisoformat(value.replace(" ", "T", 1).replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None:
        raise ClipsearchError(
            f"{option} takes 2024, 2024-06, 2024-06-15 or a time like 2024-06-15T18:00 "
            f"(optionally with +02:00), not {text!r}"
        )
    offset = moment.utcoffset()
    minutes = None if offset is None else int(offset.total_seconds() // 60)
    return TimeBound(moment.replace(tzinfo=None), minutes)


def _period_edge(year: str, month: str | None, day: str | None, *, end: bool) -> dt.datetime:
    y, m, d = int(year), int(month or 1), int(day or 1)
    start = dt.datetime(y, m, d)  # raises ValueError for month 13, day 31 of June...
    if not end:
        return start
    if day:
        return start.replace(hour=23, minute=59, second=59)
    last_month = m if month else 12
    last_day = calendar.monthrange(y, last_month)[1]
    return dt.datetime(y, last_month, last_day, 23, 59, 59)


def parse_near(
    text: str, km: float | str | None, say: Callable[[str], None] | None = None
) -> Circle:
    """'Lisbon' or '38.72,-9.13' with a radius; a name is looked up in the gazetteer and the
    place it picked is said on stderr, since a name can mean more than one town.  The radius
    may come as text (a web form's field)."""
    radius = DEFAULT_KM if km is None else _number(km)
    if not (0 < radius <= 20_100):
        raise ClipsearchError(f"--km must be between 0 and 20100 (half the Earth), not {km}")
    from . import places

    point = places.parse_coordinates(text)
    if point is not None:
        return Circle(point[0], point[1], radius, f"{point[0]:.4f}, {point[1]:.4f}")
    place = places.find_place(text)
    if say is not None:
        say(f"near {place.describe()}, within {radius:g} km")
    return Circle(place.lat, place.lon, radius, place.label)


def _number(km: float | str) -> float:
    try:
        value = float(km)
    except ValueError:
        raise ClipsearchError(f"--km takes a number of kilometres, not {km!r}") from None
    if not math.isfinite(value):
        raise ClipsearchError(f"--km takes a number of kilometres, not {km!r}")
    return value


def make_filters(
    *,
    after: str | None = None,
    before: str | None = None,
    near: str | None = None,
    km: float | str | None = None,
    camera: str | None = None,
    say: Callable[[str], None] | None = None,
) -> Filters:
    """The filters of the CLI's and the API's options, checked: an empty range or a radius
    without a centre is a mistake to report, not a query that finds nothing."""
    low = parse_bound(after, end=False, option="--after") if after else None
    high = parse_bound(before, end=True, option="--before") if before else None
    if low and high and _utc_guess(low) > _utc_guess(high):
        raise ClipsearchError(f"--after {after} is later than --before {before}: nothing fits")
    if km is not None and near is None:
        raise ClipsearchError("--km needs --near PLACE or --near LAT,LON")
    circle = parse_near(near, km, say) if near else None
    wanted = camera.strip() if camera is not None else None
    if camera is not None and not wanted:
        raise ClipsearchError("--camera needs some text, e.g. --camera iPhone")
    return Filters(low, high, circle, wanted)


def _utc_guess(bound: TimeBound) -> dt.datetime:
    return bound.moment - dt.timedelta(minutes=bound.offset_minutes or 0)


def check_sort(sort: str) -> str:
    if sort not in SORTS:
        raise ClipsearchError(f"--sort takes score, date or -date, not {sort!r}")
    return sort
