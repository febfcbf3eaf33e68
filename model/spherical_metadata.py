"""Tag an mp4 as a 360° equirectangular video (Google Spherical Video V1 metadata).

360° players (YouTube, VLC, most desktop viewers) recognise a panorama by a `uuid` box inside the
video track's `trak` box holding the Spherical Video V1 XML
(https://github.com/google/spatial-media/blob/master/docs/spherical-video-rfc.md). The ffmpeg
binary has no plain command-line flag that writes it, so we insert the box ourselves: a small pure
function on the file's bytes.

Inserting bytes into `moov` moves everything after it. Our encoder writes `moov` before `mdat`
(faststart), so every chunk offset (`stco` / `co64`) of every track is shifted by the size of the
inserted box — otherwise the player would read the frames from the wrong place.
"""
from __future__ import annotations

import os
import re
import struct
from pathlib import Path

SPHERICAL_UUID = bytes.fromhex("ffcc8263f8554a938814587a02521fdd")

_XML = (
    '<?xml version="1.0"?>'
    '<rdf:SphericalVideo xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
    'xmlns:GSpherical="http://ns.google.com/videos/1.0/spherical/">'
    "<GSpherical:Spherical>true</GSpherical:Spherical>"
    "<GSpherical:Stitched>true</GSpherical:Stitched>"
    "<GSpherical:StitchingSoftware>argus360</GSpherical:StitchingSoftware>"
    "<GSpherical:ProjectionType>equirectangular</GSpherical:ProjectionType>"
    "</rdf:SphericalVideo>"
)

# boxes whose payload is a list of boxes, on the way down to the chunk-offset tables
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def spherical_xml() -> bytes:
    """The Spherical Video V1 XML for a mono equirectangular video."""
    return _XML.encode("utf-8")


def _boxes(data: bytes, start: int, end: int, where: str) -> list[tuple[bytes, int, int, int]]:
    """The boxes in data[start:end] as (type, box start, payload start, box end)."""
    out, pos = [], start
    while pos < end:
        if end - pos < 8:
            raise ValueError(f"{where}: truncated box header at byte {pos}")
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:  # 64-bit size follows the type
            if end - pos < 16:
                raise ValueError(f"{where}: truncated 64-bit box header at byte {pos}")
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            header = 16
        elif size == 0:  # box runs to the end of its parent
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"{where}: box {kind!r} at byte {pos} has an impossible size {size}")
        if kind == b"uuid":
            header += 16
        out.append((kind, pos, pos + header, pos + size))
        pos += size
    return out


def _find(boxes, kind: bytes):
    return [b for b in boxes if b[0] == kind]


def _handler(data: bytes, trak: tuple, where: str) -> bytes:
    """The handler type of a track ('vide', 'soun', …) from trak/mdia/hdlr."""
    for mdia in _find(_boxes(data, trak[2], trak[3], where), b"mdia"):
        for hdlr in _find(_boxes(data, mdia[2], mdia[3], where), b"hdlr"):
            return data[hdlr[2] + 8:hdlr[2] + 12]  # version/flags (4), pre_defined (4), handler (4)
    return b""


def _is_spherical_box(data: bytes, box: tuple) -> bool:
    return box[0] == b"uuid" and data[box[2] - 16:box[2]] == SPHERICAL_UUID


def _shift_chunk_offsets(buf: bytearray, start: int, end: int, delta: int, where: str) -> None:
    """Add `delta` to every stco/co64 entry below buf[start:end], in place."""
    for kind, _, payload, box_end in _boxes(buf, start, end, where):
        if kind in _CONTAINERS:
            _shift_chunk_offsets(buf, payload, box_end, delta, where)
        elif kind in (b"stco", b"co64"):
            count = struct.unpack(">I", buf[payload + 4:payload + 8])[0]
            width, fmt = (4, ">I") if kind == b"stco" else (8, ">Q")
            for i in range(count):
                at = payload + 8 + i * width
                value = struct.unpack(fmt, buf[at:at + width])[0] + delta
                if kind == b"stco" and value >= 2**32:
                    raise ValueError(f"{where}: chunk offset overflows 32 bits after inserting metadata")
                buf[at:at + width] = struct.pack(fmt, value)


def _set_size(buf: bytearray, box_start: int, new_size: int) -> None:
    size = struct.unpack(">I", buf[box_start:box_start + 4])[0]
    if size == 1:
        buf[box_start + 8:box_start + 16] = struct.pack(">Q", new_size)
    elif new_size < 2**32:
        buf[box_start:box_start + 4] = struct.pack(">I", new_size)
    else:
        raise ValueError("box grows past 4 GiB with a 32-bit size field")


def inject_spherical_v1(data: bytes, name: str = "mp4") -> bytes:
    """Return the mp4 bytes with a Spherical V1 `uuid` box appended to the video `trak`.

    An existing spherical box is replaced, so tagging twice gives the same file. Chunk offsets
    are shifted when `moov` lies before `mdat`.
    """
    top = _boxes(data, 0, len(data), name)
    moovs = _find(top, b"moov")
    if not moovs:
        raise ValueError(f"{name}: no moov box (not an mp4, or a fragmented one)")
    moov = moovs[0]
    video_traks = [t for t in _find(_boxes(data, moov[2], moov[3], name), b"trak")
                   if _handler(data, t, name) == b"vide"]
    if not video_traks:
        raise ValueError(f"{name}: no video track")
    trak = video_traks[0]
    old = [b for b in _boxes(data, trak[2], trak[3], name) if _is_spherical_box(data, b)]

    xml = spherical_xml()
    box = struct.pack(">I4s", 8 + 16 + len(xml), b"uuid") + SPHERICAL_UUID + xml
    # the trak's new children: everything but an old spherical box, then ours at the end
    kept = b"".join(data[b[1]:b[3]] for b in _boxes(data, trak[2], trak[3], name) if b not in old)
    new_payload = kept + box
    delta = len(new_payload) - (trak[3] - trak[2])

    buf = bytearray(data[:trak[2]] + new_payload + data[trak[3]:])
    _set_size(buf, trak[1], trak[3] - trak[1] + delta)
    _set_size(buf, moov[1], moov[3] - moov[1] + delta)
    mdat_after_moov = any(b[0] == b"mdat" and b[1] > moov[1] for b in top)
    if mdat_after_moov and delta:
        _shift_chunk_offsets(buf, moov[2], moov[3] + delta, delta, name)
    return bytes(buf)


def read_spherical_v1(data: bytes, name: str = "mp4") -> dict[str, str] | None:
    """The GSpherical tags of the video track ({'Spherical': 'true', 'ProjectionType': …}), or None."""
    top = _boxes(data, 0, len(data), name)
    for moov in _find(top, b"moov"):
        for trak in _find(_boxes(data, moov[2], moov[3], name), b"trak"):
            for b in _boxes(data, trak[2], trak[3], name):
                if _is_spherical_box(data, b):
                    xml = data[b[2]:b[3]].decode("utf-8", errors="replace")
                    return dict(re.findall(r"<GSpherical:(\w+)>([^<]*)</GSpherical:\1>", xml))
    return None


def tag_equirect_mp4(path: str | os.PathLike) -> Path:
    """Tag an mp4 file in place (written to a temporary name, then renamed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    tagged = inject_spherical_v1(path.read_bytes(), name=str(path))
    partial = path.with_name(path.name + ".tagging")
    partial.write_bytes(tagged)
    os.replace(partial, path)
    return path
