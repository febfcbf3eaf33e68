"""Spherical metadata (shards.spherical): mp4 V1 / V2 and Matroska / WebM, written and read back.

Every tagged file must still decode to the same frames, and ffprobe (an independent reader) must
see what we wrote. One file per container is tagged by hand, from the specs' byte layouts, so the
reader is not only checked against its own writer.
"""
import shutil
import struct
import subprocess

import numpy as np
import pytest

from shards import spherical
from shards.spherical import read_projection, read_spherical_v1, tag_file, tag_matroska, tag_mp4
from shards.video import decode_frames, encode_mp4, ffmpeg_exe

CASES = [("equirectangular", "mono"), ("cubemap", "mono"), ("mesh", "mono"), ("equirectangular", "top-bottom")]
FFPROBE_NAMES = {"equirectangular": "projection=equirectangular", "cubemap": "projection=cubemap"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("spherical")
    frames = np.random.default_rng(0).integers(0, 256, (5, 32, 64, 3), dtype=np.uint8)
    mp4 = d / "plain.mp4"
    mp4.write_bytes(encode_mp4(frames, 5))
    webm = d / "plain.webm"
    r = subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(mp4), "-c:v", "libvpx-vp9", "-b:v", "200k",
                        str(webm)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"ffmpeg cannot write VP9 WebM here: {r.stderr[-300:]}")
    return d, mp4, webm


def ffprobe_streams(path) -> str:
    exe = shutil.which("ffprobe")
    if exe is None:
        pytest.skip("no ffprobe binary to read the metadata back independently")
    return subprocess.run([exe, "-v", "error", "-show_streams", str(path)], capture_output=True, text=True,
                          check=True).stdout


def test_untagged_files_declare_nothing(videos):
    _, mp4, webm = videos
    assert read_projection(mp4) == {"projection": None, "stereo_mode": None}
    assert read_projection(webm) == {"projection": None, "stereo_mode": None}


@pytest.mark.parametrize("projection,stereo", CASES)
@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_written_metadata_reads_back_and_the_video_still_decodes(videos, container, projection, stereo):
    d, mp4, webm = videos
    src = mp4 if container == "mp4" else webm
    out = d / f"{projection}-{stereo}.{container}"
    shutil.copy(src, out)
    version = 1 if projection == "equirectangular" and container == "mp4" else 2
    tag_file(out, projection, stereo, version=version)
    assert read_projection(out) == {"projection": projection, "stereo_mode": stereo}
    np.testing.assert_array_equal(decode_frames(out), decode_frames(src))  # offsets moved with the data
    again = out.read_bytes()
    tag_file(out, projection, stereo, version=version)
    assert out.read_bytes() == again  # tagging twice replaces, never duplicates
    shown = ffprobe_streams(out)
    if projection in FFPROBE_NAMES:
        assert FFPROBE_NAMES[projection] in shown
    assert ("type=top and bottom" in shown) == (stereo == "top-bottom")


def test_v2_replaces_v1_and_the_v1_api_for_generation(videos):
    _, mp4, _ = videos
    data = mp4.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: chunk offsets must be shifted
    v1 = spherical.inject_spherical_v1(data)
    assert read_spherical_v1(v1)["ProjectionType"] == "equirectangular"
    v2 = tag_mp4(v1, "cubemap", "mono", version=2)
    assert read_spherical_v1(v2) is None  # one declaration per file
    with pytest.raises(ValueError, match="V1 declares only equirectangular"):
        tag_mp4(data, "cubemap", version=1)
    with pytest.raises(ValueError, match="no moov"):
        spherical.inject_spherical_v1(b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00")


# -------------------------------------------------------------------------- tagged by hand
def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _insert_into(data: bytes, path: list[bytes], box: bytes) -> bytes:
    """Append `box` to the end of the box at `path` (moov/trak/…), growing every box on the way.
    The file must keep its moov after mdat (then no chunk offset moves)."""
    skip = {b"stsd": 8, b"avc1": 78}
    start, end, parents = 0, len(data), []
    for kind in path:
        pos = start
        while pos < end:
            size, k = struct.unpack(">I4s", data[pos:pos + 8])
            if k == kind and (kind != b"trak" or b"vide" in data[pos:pos + size]):
                break
            pos += size
        else:
            raise AssertionError(f"no {kind!r}")
        parents.append(pos)
        start, end = pos + 8 + skip.get(kind, 0), pos + size
    buf = bytearray(data[:end] + box + data[end:])
    for p in parents:
        buf[p:p + 4] = struct.pack(">I", struct.unpack(">I", buf[p:p + 4])[0] + len(box))
    return bytes(buf)


def test_mp4_tagged_by_hand_to_the_v1_and_v2_specs(videos, tmp_path):
    _, mp4, _ = videos
    plain = tmp_path / "moov_last.mp4"  # no faststart: moov after mdat
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(mp4), "-c", "copy", str(plain)], check=True)
    data = plain.read_bytes()
    assert data.find(b"mdat") < data.find(b"moov")
    xml = (b'<?xml version="1.0"?><rdf:SphericalVideo xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
           b'xmlns:GSpherical="http://ns.google.com/videos/1.0/spherical/"><GSpherical:Spherical>true'
           b'</GSpherical:Spherical><GSpherical:Stitched>true</GSpherical:Stitched><GSpherical:StereoMode>'
           b'top-bottom</GSpherical:StereoMode></rdf:SphericalVideo>')  # ProjectionType omitted: equirect
    v1 = tmp_path / "v1.mp4"
    v1.write_bytes(_insert_into(data, [b"moov", b"trak"], _box(b"uuid", spherical.SPHERICAL_UUID + xml)))
    assert read_projection(v1) == {"projection": "equirectangular", "stereo_mode": "top-bottom"}
    full = b"\x00\x00\x00\x00"  # version 0, flags 0
    sv3d = _box(b"sv3d", _box(b"svhd", full + b"hand\x00")
                + _box(b"proj", _box(b"prhd", full + bytes(12)) + _box(b"cbmp", full + bytes(8))))
    entry = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"avc1"]
    v2 = tmp_path / "v2.mp4"
    v2.write_bytes(_insert_into(_insert_into(data, entry, _box(b"st3d", full + b"\x02")), entry, sv3d))
    assert read_projection(v2) == {"projection": "cubemap", "stereo_mode": "left-right"}
    np.testing.assert_array_equal(decode_frames(v2), decode_frames(plain))
    assert "projection=cubemap" in ffprobe_streams(v2)


def _ebml(eid: int, body: bytes) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big") + bytes([0x80 | len(body)]) + body  # len < 127


def test_webm_header_written_by_hand_to_the_matroska_spec(tmp_path):
    """EBML header + Segment(Tracks(TrackEntry(TrackType 1, Video(StereoMode 3, Projection(type 3)))))."""
    header = _ebml(0x1A45DFA3, _ebml(0x4282, b"webm"))
    video = _ebml(0xE0, _ebml(0xB0, b"\x40") + _ebml(0xBA, b"\x20") + _ebml(0x53B8, b"\x03")
                  + _ebml(0x7670, _ebml(0x7671, b"\x03")))
    track = _ebml(0xAE, _ebml(0xD7, b"\x01") + _ebml(0x83, b"\x01") + _ebml(0x86, b"V_VP9") + video)
    path = tmp_path / "hand.webm"
    path.write_bytes(header + _ebml(0x18538067, _ebml(0x1654AE6B, track)))
    assert read_projection(path) == {"projection": "mesh", "stereo_mode": "top-bottom"}
    retagged = tag_matroska(path.read_bytes(), "equirectangular", "mono")
    path.write_bytes(retagged)
    assert read_projection(path) == {"projection": "equirectangular", "stereo_mode": "mono"}


def test_hostile_headers_are_refused_without_reading_them(tmp_path):
    huge = tmp_path / "huge_moov.mp4"
    huge.write_bytes(struct.pack(">I4s", 16, b"ftyp") + bytes(8) + struct.pack(">I4s", 0xFFFFFFF0, b"moov"))
    with pytest.raises(ValueError, match="moov box"):
        read_projection(huge)
    bad = tmp_path / "bad.webm"
    bad.write_bytes(b"\x1a\x45\xdf\xa3\x80\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff"
                    b"\x16\x54\xae\x6b\x08\xff\xff\xff\xff\xff\xff\xff")
    with pytest.raises(ValueError):
        read_projection(bad)
