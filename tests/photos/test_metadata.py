"""Reading capture time, place and camera from photo headers, format by format, and dropping
exactly the fields that are corrupt or absurd."""

from __future__ import annotations

import datetime as dt
import io
import struct
from pathlib import Path

import pytest
from exifwriter import (
    RATIONAL,
    dng_bytes,
    exif_block,
    exif_tags,
    gps_tags,
    jpeg_with,
    tiff_block,
    write_photo,
)
from PIL import Image

from clipsearch.photos import metadata
from clipsearch.photos.metadata import EMPTY, PhotoMeta, parse_exif_time, read_metadata

FULL = dict(
    taken="2023:07:14 18:03:22",
    offset="+02:00",
    make="Apple",
    model="iPhone 13 Pro",
    lens="iPhone 13 Pro back triple camera 5.7mm f/1.5",
    lat=38.7223,
    lon=-9.1393,
    altitude=58.5,
)


def assert_full(meta: PhotoMeta) -> None:
    assert meta.taken == dt.datetime(2023, 7, 14, 18, 3, 22)
    assert meta.offset_minutes == 120
    assert meta.taken_iso == "2023-07-14T18:03:22+02:00"
    assert meta.lat == pytest.approx(38.7223, abs=1e-6)
    assert meta.lon == pytest.approx(-9.1393, abs=1e-6)
    assert meta.altitude == pytest.approx(58.5)
    assert meta.camera == "Apple iPhone 13 Pro"
    assert meta.lens.startswith("iPhone 13 Pro back")
    assert (meta.width, meta.height) == (96, 64)


@pytest.mark.parametrize("name", ["a.jpg", "a.png", "a.webp", "a.heic", "a.avif"])
def test_every_pillow_format(tmp_path: Path, name: str) -> None:
    if name.endswith(".heic"):
        pytest.importorskip("pillow_heif")
    if name.endswith(".avif"):
        from PIL import features

        if not features.check_module("avif"):
            pytest.skip("this Pillow writes no AVIF")
    path = write_photo(tmp_path / name, exif_block(**FULL))
    assert_full(read_metadata(path))


def test_tiff_and_dng(tmp_path: Path) -> None:
    ifd0, exif = exif_tags(FULL["taken"], FULL["offset"], "Apple", "iPhone 13 Pro", FULL["lens"])
    gps = gps_tags(FULL["lat"], FULL["lon"], FULL["altitude"])
    dng = tmp_path / "a.dng"
    dng.write_bytes(dng_bytes(ifd0, exif, gps))
    assert_full(read_metadata(dng))
    tif = tmp_path / "a.tif"
    tif.write_bytes(dng_bytes(ifd0, exif, gps))  # any TIFF structure reads the same
    assert_full(read_metadata(tif))


@pytest.mark.parametrize(
    ("lat", "lon"), [(38.72, -9.14), (-33.86, 151.21), (40.71, -74.0), (-22.9, 43.2)]
)
def test_four_hemispheres(tmp_path: Path, lat: float, lon: float) -> None:
    path = write_photo(tmp_path / "a.jpg", exif_block(lat=lat, lon=lon))
    meta = read_metadata(path)
    assert (meta.lat, meta.lon) == (pytest.approx(lat), pytest.approx(lon))


def test_no_offset_is_a_wall_clock_time(tmp_path: Path) -> None:
    path = write_photo(tmp_path / "a.jpg", exif_block(taken="2019:12:31 23:59:59"))
    meta = read_metadata(path)
    assert meta.taken_iso == "2019-12-31T23:59:59" and meta.offset_minutes is None


def test_create_date_when_no_original(tmp_path: Path) -> None:
    block = tiff_block({}, {0x9004: "2018:05:06 07:08:09", 0x9012: "-05:00"})
    meta = read_metadata(write_photo(tmp_path / "a.jpg", block))
    assert meta.taken_iso == "2018-05-06T07:08:09-05:00"


def test_xmp_date_and_gps_when_no_exif(tmp_path: Path) -> None:
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
        'xmlns:exif="http://ns.adobe.com/exif/1.0/" '
        'exif:DateTimeOriginal="2017-08-09T10:11:12+09:00" '
        'exif:GPSLatitude="35,41.1N" exif:GPSLongitude="139,41.4E"/></rdf:RDF></x:xmpmeta>'
    )
    path = tmp_path / "a.png"
    from exifwriter import picture
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    picture().save(path, pnginfo=info)
    meta = read_metadata(path)
    assert meta.taken_iso == "2017-08-09T10:11:12+09:00"
    assert meta.lat == pytest.approx(35.685) and meta.lon == pytest.approx(139.69)


def test_png_exif_after_the_pixels_is_found_without_decoding(tmp_path: Path) -> None:
    path = write_photo(tmp_path / "a.png", exif_block(taken="2020:02:02 02:02:02"))
    data = path.read_bytes()
    # Move the eXIf chunk behind IDAT, where Pillow only looks after decoding.
    start = data.index(b"eXIf") - 4
    length = struct.unpack(">I", data[start : start + 4])[0]
    chunk = data[start : start + 12 + length]
    rest = data[:start] + data[start + 12 + length :]
    iend = rest.index(b"IEND") - 4
    path.write_bytes(rest[:iend] + chunk + rest[iend:])
    assert Image.open(path).info.get("exif") is None
    assert read_metadata(path).taken == dt.datetime(2020, 2, 2, 2, 2, 2)


def test_no_metadata_is_empty(tmp_path: Path) -> None:
    path = write_photo(tmp_path / "a.jpg", None)
    assert read_metadata(path) == PhotoMeta(width=96, height=64)
    assert read_metadata(tmp_path / "missing.jpg") == EMPTY


@pytest.mark.parametrize(
    ("field", "block_kwargs", "kept"),
    [
        ("year 0000", dict(taken="0000:00:00 00:00:00", lat=10.0, lon=20.0), "lat"),
        ("2099", dict(taken="2099:01:01 00:00:00", lat=10.0, lon=20.0), "lat"),
        ("blank", dict(taken="    :  :     :  :  ", lat=10.0, lon=20.0), "lat"),
        ("month 13", dict(taken="2020:13:01 00:00:00", make="Nikon"), "make"),
        ("offset +99", dict(taken="2020:01:01 10:00:00", offset="+99:00"), "taken"),
    ],
)
def test_absurd_dates_are_dropped_alone(tmp_path: Path, field, block_kwargs, kept) -> None:
    meta = read_metadata(write_photo(tmp_path / "a.jpg", exif_block(**block_kwargs)))
    if kept == "taken":
        assert meta.taken is not None and meta.offset_minutes is None
    else:
        assert meta.taken is None and getattr(meta, kept) is not None, field


@pytest.mark.parametrize(
    "gps",
    [
        {1: "N", 2: [(10, 0), (0, 1), (0, 1)], 3: "E", 4: [(20, 1), (0, 1), (0, 1)]},  # 0 den.
        {1: "N", 2: [(300, 1), (0, 1), (0, 1)], 3: "E", 4: [(20, 1), (0, 1), (0, 1)]},  # lat 300
        {1: "N", 2: [(10, 1), (75, 1), (0, 1)], 3: "E", 4: [(20, 1), (0, 1), (0, 1)]},  # 75 min
        {1: "N", 2: [(0, 1), (0, 1), (0, 1)], 3: "E", 4: [(0, 1), (0, 1), (0, 1)]},  # no fix
        {1: "N", 2: "garbage", 3: "E", 4: [(20, 1)]},  # wrong type
    ],
)
def test_corrupt_gps_is_dropped_alone(tmp_path: Path, gps) -> None:
    ifd0, exif = exif_tags("2021:01:01 12:00:00", None, "Sony", "ILCE-7M3")
    meta = read_metadata(write_photo(tmp_path / "a.jpg", tiff_block(ifd0, exif, gps)))
    assert meta.lat is None and meta.lon is None and meta.altitude is None
    assert meta.taken == dt.datetime(2021, 1, 1, 12) and meta.camera == "Sony ILCE-7M3"


def test_rational_with_zero_denominator_altitude(tmp_path: Path) -> None:
    gps = gps_tags(1.5, 2.5)
    gps[6] = (RATIONAL, [(100, 0)])
    meta = read_metadata(write_photo(tmp_path / "a.jpg", tiff_block({}, {}, gps)))
    assert meta.lat == pytest.approx(1.5) and meta.altitude is None


def test_pointers_past_the_end_and_huge_counts(tmp_path: Path) -> None:
    good = exif_block(taken="2022:02:02 10:00:00", make="Fujifilm")
    # An Exif IFD pointer far past the end, and a directory claiming 65535 entries.
    broken = bytearray(good)
    ifd_at = struct.unpack("<I", good[4:8])[0]
    count = struct.unpack("<H", good[ifd_at : ifd_at + 2])[0]
    for i in range(count):
        at = ifd_at + 2 + 12 * i
        if struct.unpack("<H", good[at : at + 2])[0] == 0x8769:
            broken[at + 8 : at + 12] = struct.pack("<I", 10_000_000)
    meta = metadata.from_blobs(bytes(broken), None)
    assert meta.make == "Fujifilm" and meta.taken is None
    huge = bytearray(good)
    huge[ifd_at : ifd_at + 2] = b"\xff\xff"
    assert metadata.from_blobs(bytes(huge), None).make == "Fujifilm"  # read what is there


@pytest.mark.parametrize("cut", [6, 10, 20, 40, 80])
def test_truncated_exif_never_raises(cut: int) -> None:
    block = exif_block(**FULL)
    metadata.from_blobs(block[:cut], None)
    metadata.from_blobs(b"Exif\0\0" + block[:cut], None)


def test_garbage_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe1\x00\x10Exif\0\0II*\0\xff\xff\xff\x7f" + b"\0" * 50)
    assert read_metadata(path).taken is None


def test_cr3_boxes(tmp_path: Path) -> None:
    ifd0, exif = exif_tags(FULL["taken"], FULL["offset"], "Canon", "Canon EOS R6")

    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", 8 + len(body)) + kind + body

    cmt = (
        box(b"CMT1", tiff_block(ifd0))
        + box(b"CMT2", tiff_block(exif))
        + box(b"CMT4", tiff_block(gps_tags(-1.5, -2.5)))
    )
    data = box(b"ftyp", b"crx \0\0\0\1") + box(b"moov", box(b"uuid", b"\0" * 16 + cmt))
    path = tmp_path / "a.cr3"
    path.write_bytes(data)
    meta = read_metadata(path)
    assert meta.taken_iso == "2023-07-14T18:03:22+02:00" and meta.camera == "Canon EOS R6"
    assert (meta.lat, meta.lon) == (pytest.approx(-1.5), pytest.approx(-2.5))


def test_raf_embedded_jpeg(tmp_path: Path) -> None:
    jpeg = jpeg_with(exif_block(taken="2016:06:06 06:06:06", make="FUJIFILM", model="X-T2"))
    header = b"FUJIFILMCCD-RAW 0201FF383501".ljust(84, b"\0")
    data = header + struct.pack(">II", 100, len(jpeg))
    data = data.ljust(100, b"\0") + jpeg
    path = tmp_path / "a.raf"
    path.write_bytes(data)
    meta = read_metadata(path)
    assert meta.taken == dt.datetime(2016, 6, 6, 6, 6, 6) and meta.camera == "FUJIFILM X-T2"


def test_for_decoded_reads_the_open_file(tmp_path: Path) -> None:
    path = write_photo(tmp_path / "a.jpg", exif_block(**FULL))
    with open(path, "rb") as fp, Image.open(fp) as im:
        im.load()
        assert_full(metadata.for_decoded(fp, ".jpg", im))
    dng = tmp_path / "a.dng"
    ifd0, exif = exif_tags(FULL["taken"], FULL["offset"], "Apple", "iPhone 13 Pro", FULL["lens"])
    dng.write_bytes(dng_bytes(ifd0, exif, gps_tags(FULL["lat"], FULL["lon"], 58.5)))
    with open(dng, "rb") as fp:
        fp.seek(123)
        assert_full(metadata.for_decoded(fp, ".dng", None))
        assert fp.tell() == 123  # the decoder's position is left alone


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ("2023:07:14 18:03:22", None, ("2023-07-14T18:03:22", None)),
        ("2023-07-14T18:03:22+05:30", None, ("2023-07-14T18:03:22", 330)),
        ("2023:07:14 18:03:22.123", "-0800", ("2023-07-14T18:03:22", -480)),
        ("2023:07:14 18:03", "Z", ("2023-07-14T18:03:00", 0)),
        ("2023-07-14", None, ("2023-07-14T00:00:00", None)),
        ("1825:01:01 00:00:00", None, (None, None)),
        ("", None, (None, None)),
        ("2023:02:30 10:00:00", None, (None, None)),
    ],
)
def test_parse_exif_time(text, offset, expected) -> None:
    taken, minutes = parse_exif_time(text, offset)
    assert (taken.isoformat() if taken else None, minutes) == expected


def test_future_is_relative_to_now() -> None:
    now = dt.datetime(2030, 1, 1)
    assert parse_exif_time("2030:01:02 00:00:00", None, now=now)[0] is not None
    assert parse_exif_time("2030:01:05 00:00:00", None, now=now)[0] is None


def test_camera_name() -> None:
    assert metadata.camera_name("Canon", "Canon EOS R5") == "Canon EOS R5"
    assert metadata.camera_name("NIKON CORPORATION", "NIKON D750") == "NIKON D750"
    assert metadata.camera_name("Apple", "iPhone 12") == "Apple iPhone 12"
    assert metadata.camera_name(None, "X100V") == "X100V"
    assert metadata.camera_name(None, None) is None


def test_header_read_does_not_decode(tmp_path: Path, monkeypatch) -> None:
    """Reading metadata must not decode pixels: fail loudly if Pillow tries."""
    path = write_photo(tmp_path / "a.jpg", exif_block(**FULL))

    def refuse(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(Image.Image, "load", refuse)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", refuse)
    assert_full(read_metadata(path))
    buf = io.BytesIO(path.read_bytes())
    assert_full(metadata.read_from_file(buf, ".jpg"))
