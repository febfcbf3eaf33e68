"""Spherical (360°) video metadata: the one reader and writer, for mp4 and Matroska / WebM.

What a file can declare about its projection, and where:
- mp4, Spherical Video V1 (https://github.com/google/spatial-media/blob/master/docs/spherical-video-rfc.md):
  a `uuid` box (ffcc8263-f855-4a93-8814-587a02521fdd) in the video `trak` holding XML with
  `GSpherical:ProjectionType` (equirectangular) and `GSpherical:StereoMode` (mono, top-bottom,
  left-right);
- mp4, Spherical Video V2 (.../docs/spherical-video-v2-rfc.md): in the video sample entry
  (stsd/avc1, vp09, …) an `st3d` box (stereo mode 0 mono, 1 top-bottom, 2 left-right) and an
  `sv3d` box holding `proj`, whose child names the projection: `equi`, `cbmp` (cube map) or
  `mshp` (mesh; YouTube's "mesh" formats);
- Matroska / WebM: `Video/Projection/ProjectionType` (0 rectangular, 1 equirectangular, 2 cube map,
  3 mesh) and `Video/StereoMode` (0 mono, 1 / 11 side by side, 2 / 3 top-bottom, …).

`read_projection(path)` returns {"projection": …, "stereo_mode": …} with None for what is not
declared; it reads only the header boxes / elements (bounded: a file that declares a huge `moov`
or `Tracks` is refused), never the media. `tag_mp4` / `tag_matroska` write the metadata into the
bytes of a file (the generator tags its panoramas; the tests make cube maps, meshes and stereo).

Inserting bytes into a header moves everything after it, so the writers fix what points into the
file: chunk offsets (`stco` / `co64`) in mp4 when `moov` precedes `mdat`; `SeekHead` and `Cues`
positions in Matroska (re-encoded with 8-byte positions so their size does not depend on them).
"""
from __future__ import annotations

import io
import os
import re
import struct
from pathlib import Path

PROJECTIONS = ("equirectangular", "cubemap", "mesh", "rectangular")
STEREO_MODES = ("mono", "top-bottom", "left-right")
MAX_HEADER_BYTES = 64 * 2**20  # a moov / Tracks larger than this is refused, never read

# ------------------------------------------------------------------------------------------ mp4
SPHERICAL_UUID = bytes.fromhex("ffcc8263f8554a938814587a02521fdd")
# box → bytes of fixed fields before its child boxes (containers we descend into)
_MP4_CONTAINERS = {b"moov": 0, b"trak": 0, b"mdia": 0, b"minf": 0, b"stbl": 0, b"stsd": 8, b"sv3d": 0, b"proj": 0}
_VISUAL_ENTRIES = (b"avc1", b"avc3", b"hvc1", b"hev1", b"vp08", b"vp09", b"av01", b"mp4v", b"encv", b"dvh1", b"dvhe")
_MP4_CONTAINERS.update({k: 78 for k in _VISUAL_ENTRIES})  # VisualSampleEntry: 78 bytes of fields
_V2_PROJ = {b"equi": "equirectangular", b"cbmp": "cubemap", b"mshp": "mesh"}
_V2_STEREO = {0: "mono", 1: "top-bottom", 2: "left-right"}


class Box:
    """One mp4 box: a container (fixed `prefix` fields + `children`) or a leaf (`payload`)."""

    def __init__(self, kind: bytes, prefix: bytes = b"", children: list | None = None, payload: bytes = b""):
        self.kind, self.prefix, self.children, self.payload = kind, prefix, children, payload

    def find(self, kind: bytes) -> list["Box"]:
        return [c for c in self.children or [] if c.kind == kind]

    def to_bytes(self) -> bytes:
        body = self.prefix + b"".join(c.to_bytes() for c in self.children) if self.children is not None \
            else self.payload
        size = 8 + len(body)
        if size < 2**32:
            return struct.pack(">I4s", size, self.kind) + body
        return struct.pack(">I4sQ", 1, self.kind, size + 8) + body


def _box_spans(data: bytes, start: int, end: int, where: str):
    """(type, box start, payload start, box end) of each box in data[start:end]."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise ValueError(f"{where}: truncated box header at byte {pos}")
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            if end - pos < 16:
                raise ValueError(f"{where}: truncated 64-bit box header at byte {pos}")
            size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        elif size == 0:  # runs to the end of its parent
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"{where}: box {kind!r} at byte {pos} has an impossible size {size}")
        yield kind, pos, pos + header, pos + size
        pos += size


def _parse_box(data: bytes, kind: bytes, payload: int, end: int, where: str, depth: int = 0) -> Box:
    fixed = _MP4_CONTAINERS.get(kind)
    if fixed is None or depth > 16 or end - payload < fixed:
        return Box(kind, payload=data[payload:end])
    children = [_parse_box(data, k, p, e, where, depth + 1)
                for k, _, p, e in _box_spans(data, payload + fixed, end, where)]
    return Box(kind, prefix=data[payload:payload + fixed], children=children)


def _video_trak(moov: Box) -> Box | None:
    for trak in moov.find(b"trak"):
        for mdia in trak.find(b"mdia"):
            for hdlr in mdia.find(b"hdlr"):
                if hdlr.payload[8:12] == b"vide":  # version/flags (4), pre_defined (4), handler (4)
                    return trak
    return None


def _sample_entry(trak: Box) -> Box | None:
    for path in (b"mdia", b"minf", b"stbl", b"stsd"):
        found = trak.find(path)
        if not found:
            return None
        trak = found[0]
    entries = [c for c in trak.children if c.children is not None]
    return entries[0] if entries else None


def _is_v1(box: Box) -> bool:
    return box.kind == b"uuid" and box.payload[:16] == SPHERICAL_UUID


def _shift_offsets(box: Box, delta: int, where: str) -> None:
    for c in box.children or []:
        if c.children is not None:
            _shift_offsets(c, delta, where)
        elif c.kind in (b"stco", b"co64"):
            count = struct.unpack(">I", c.payload[4:8])[0]
            width, fmt = (4, ">I") if c.kind == b"stco" else (8, ">Q")
            if 8 + count * width > len(c.payload):
                raise ValueError(f"{where}: {c.kind.decode()} table is shorter than its entry count")
            buf = bytearray(c.payload)
            for i in range(count):
                at = 8 + i * width
                value = struct.unpack(fmt, buf[at:at + width])[0] + delta
                if c.kind == b"stco" and value >= 2**32:
                    raise ValueError(f"{where}: chunk offset overflows 32 bits after inserting metadata")
                buf[at:at + width] = struct.pack(fmt, value)
            c.payload = bytes(buf)


def _moov(data: bytes, where: str) -> tuple[Box, int, int, bool]:
    top = list(_box_spans(data, 0, len(data), where))
    moovs = [t for t in top if t[0] == b"moov"]
    if not moovs:
        raise ValueError(f"{where}: no moov box (not an mp4, or a fragmented one)")
    _, start, payload, end = moovs[0]
    mdat_after = any(t[0] == b"mdat" and t[1] > start for t in top)
    return _parse_box(data, b"moov", payload, end, where), start, end, mdat_after


def v1_xml(projection: str = "equirectangular", stereo_mode: str = "mono") -> bytes:
    """The Spherical Video V1 XML (V1 knows only the equirectangular projection; StereoMode is
    written only when not mono, its default)."""
    return (
        '<?xml version="1.0"?>'
        '<rdf:SphericalVideo xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns:GSpherical="http://ns.google.com/videos/1.0/spherical/">'
        "<GSpherical:Spherical>true</GSpherical:Spherical>"
        "<GSpherical:Stitched>true</GSpherical:Stitched>"
        "<GSpherical:StitchingSoftware>argus360</GSpherical:StitchingSoftware>"
        f"<GSpherical:ProjectionType>{projection}</GSpherical:ProjectionType>"
        + ("" if stereo_mode == "mono" else f"<GSpherical:StereoMode>{stereo_mode}</GSpherical:StereoMode>")
        + "</rdf:SphericalVideo>").encode("utf-8")


def _full(payload: bytes) -> bytes:
    return b"\x00\x00\x00\x00" + payload  # version 0, flags 0


def v2_boxes(projection: str, stereo_mode: str) -> list[Box]:
    """The `st3d` and `sv3d` boxes of Spherical Video V2."""
    stereo = {v: k for k, v in _V2_STEREO.items()}[stereo_mode]
    if projection == "equirectangular":
        proj = Box(b"equi", payload=_full(struct.pack(">4I", 0, 0, 0, 0)))  # no cropping
    elif projection == "cubemap":
        proj = Box(b"cbmp", payload=_full(struct.pack(">2I", 0, 0)))  # layout 0, no padding
    elif projection == "mesh":  # crc32, encoding; an empty mesh list is enough to declare it
        proj = Box(b"mshp", payload=_full(struct.pack(">I4s", 0, b"raw ")))
    else:
        raise ValueError(f"projection {projection!r}: V2 writes equirectangular, cubemap or mesh")
    prhd = Box(b"prhd", payload=_full(struct.pack(">3i", 0, 0, 0)))  # yaw, pitch, roll
    svhd = Box(b"svhd", payload=_full(b"argus360\x00"))
    return [Box(b"st3d", payload=_full(bytes([stereo]))),
            Box(b"sv3d", children=[svhd, Box(b"proj", children=[prhd, proj])])]


def tag_mp4(data: bytes, projection: str = "equirectangular", stereo_mode: str = "mono", version: int = 1,
            name: str = "mp4") -> bytes:
    """The mp4 bytes with Spherical Video metadata (V1 XML box or V2 `sv3d`/`st3d`) on the video
    track; earlier V1 / V2 metadata is replaced, so tagging twice gives the same file."""
    if projection not in PROJECTIONS[:3] or stereo_mode not in STEREO_MODES:
        raise ValueError(f"projection {projection!r} / stereo mode {stereo_mode!r}: "
                         f"use one of {PROJECTIONS[:3]} / {STEREO_MODES}")
    if version == 1 and projection != "equirectangular":
        raise ValueError("Spherical Video V1 declares only equirectangular; use version=2")
    moov, start, end, mdat_after = _moov(data, name)
    trak = _video_trak(moov)
    if trak is None:
        raise ValueError(f"{name}: no video track")
    entry = _sample_entry(trak)
    trak.children = [c for c in trak.children if not _is_v1(c)]
    if entry is not None:
        entry.children = [c for c in entry.children if c.kind not in (b"st3d", b"sv3d")]
    if version == 1:
        trak.children.append(Box(b"uuid", payload=SPHERICAL_UUID + v1_xml(projection, stereo_mode)))
    elif entry is None:
        raise ValueError(f"{name}: no visual sample entry to hold V2 metadata")
    else:
        entry.children += v2_boxes(projection, stereo_mode)
    delta = len(moov.to_bytes()) - (end - start)
    if mdat_after and delta:
        _shift_offsets(moov, delta, name)
    return data[:start] + moov.to_bytes() + data[end:]


def _mp4_projection(moov: Box) -> dict:
    trak = _video_trak(moov)
    out = {"projection": None, "stereo_mode": None}
    if trak is None:
        return out
    entry = _sample_entry(trak)
    if entry is not None:
        for st3d in entry.find(b"st3d"):
            mode = st3d.payload[4] if len(st3d.payload) > 4 else None
            out["stereo_mode"] = _V2_STEREO.get(mode, f"stereo_{mode}")
        for sv3d in entry.find(b"sv3d"):
            for proj in sv3d.find(b"proj"):
                for c in proj.children:
                    if c.kind in _V2_PROJ:
                        out["projection"] = _V2_PROJ[c.kind]
            if out["projection"] is None:
                out["projection"] = "unknown"
    for c in trak.children:
        if _is_v1(c):
            tags = v1_tags(c.payload[16:])
            if out["projection"] is None and tags.get("Spherical", "").lower() == "true":
                out["projection"] = tags.get("ProjectionType", "equirectangular").strip().lower()
            if out["stereo_mode"] is None and tags.get("Spherical", "").lower() == "true":
                out["stereo_mode"] = tags.get("StereoMode", "mono").strip().lower()  # V1's default: mono
    return out


def v1_tags(xml: bytes) -> dict[str, str]:
    return dict(re.findall(r"<GSpherical:(\w+)>([^<]*)</GSpherical:\1>", xml.decode("utf-8", errors="replace")))


# -------------------------------------------------------------------------- Matroska / WebM
EBML, SEGMENT, SEEKHEAD, SEEK, SEEKPOSITION = 0x1A45DFA3, 0x18538067, 0x114D9B74, 0x4DBB, 0x53AC
TRACKS, TRACKENTRY, TRACKTYPE, VIDEO = 0x1654AE6B, 0xAE, 0x83, 0xE0
STEREOMODE, PROJECTION, PROJECTIONTYPE, PROJECTIONPRIVATE = 0x53B8, 0x7670, 0x7671, 0x7672
CLUSTER, CUES, CUEPOINT, CUETRACKPOSITIONS, CUECLUSTERPOSITION = 0x1F43B675, 0x1C53BB6B, 0xBB, 0xB7, 0xF1
_MKV_MASTERS = {SEEKHEAD, SEEK, TRACKS, TRACKENTRY, VIDEO, PROJECTION, CUES, CUEPOINT, CUETRACKPOSITIONS}
_MKV_PROJ = {0: "rectangular", 1: "equirectangular", 2: "cubemap", 3: "mesh"}
_MKV_STEREO = {0: "mono", 1: "left-right", 11: "left-right", 2: "top-bottom", 3: "top-bottom"}
UNKNOWN_SIZE = -1


def _read_vint(f, max_length: int, what: str) -> tuple[bytes, int] | None:
    """The raw bytes of one EBML variable-length integer (its length is marked by the position of
    the first set bit of its first byte, at most max_length), and that length; None at the end."""
    first = f.read(1)
    if not first:
        return None
    length = next((i + 1 for i in range(max_length) if first[0] & (0x80 >> i)), 0)
    if not length:
        raise ValueError(f"invalid EBML {what}")
    rest = f.read(length - 1)
    if len(rest) != length - 1:
        raise ValueError(f"truncated EBML {what}")
    return first + rest, length


def _read_id(f) -> int | None:
    """An element id: the vint with its length marker kept (as the spec writes ids)."""
    vint = _read_vint(f, 4, "element id")
    return None if vint is None else int.from_bytes(vint[0], "big")


def _read_size(f) -> int:
    """An element size: the vint without its length marker; all ones means unknown."""
    vint = _read_vint(f, 8, "size")
    if vint is None:
        raise ValueError("truncated EBML size")
    raw, length = vint
    value = int.from_bytes(bytes([raw[0] & (0xFF >> length)]) + raw[1:], "big")
    return UNKNOWN_SIZE if value == (1 << (7 * length)) - 1 else value


def _elements(data: bytes, start: int, end: int):
    """(id, element start, data start, data end) of each EBML element in data[start:end]."""
    f = io.BytesIO(data)
    f.seek(start)
    while f.tell() < end:
        at = f.tell()
        eid = _read_id(f)
        size = _read_size(f)
        data_start = f.tell()
        data_end = end if size == UNKNOWN_SIZE else data_start + size
        if data_end > end:
            raise ValueError(f"EBML element {eid:#x} at byte {at} runs past its parent")
        yield eid, at, data_start, data_end
        f.seek(data_end)


def _id_bytes(eid: int) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big")


def _element(eid: int, body: bytes) -> bytes:
    return _id_bytes(eid) + (0x01 << 56 | len(body)).to_bytes(8, "big") + body  # 8-byte size


def _uint(eid: int, value: int, width: int | None = None) -> bytes:
    width = width or max(1, (value.bit_length() + 7) // 8)
    return _element(eid, value.to_bytes(width, "big"))


def _as_uint(data: bytes) -> int:
    return int.from_bytes(data, "big") if data else 0


def _rewrite(data: bytes, start: int, end: int, edit) -> bytes:
    """Re-encode the master elements in data[start:end] (8-byte sizes); `edit(eid, start, end,
    children_bytes)` may return replacement bytes for any element (None: keep / recurse)."""
    out = []
    for eid, at, ds, de in _elements(data, start, end):
        got = edit(eid, ds, de)
        if got is not None:
            out.append(got)
        elif eid in _MKV_MASTERS:
            out.append(_element(eid, _rewrite(data, ds, de, edit)))
        else:
            out.append(data[at:de])
    return b"".join(out)


def tag_matroska(data: bytes, projection: str = "equirectangular", stereo_mode: str = "mono",
                 name: str = "webm") -> bytes:
    """The Matroska / WebM bytes with `Projection/ProjectionType` and `StereoMode` on the first video
    track (replacing earlier ones); SeekHead and Cues positions are moved with the data."""
    ptype = {v: k for k, v in _MKV_PROJ.items()}.get(projection)
    smode = {"mono": 0, "left-right": 1, "top-bottom": 3}.get(stereo_mode)
    if ptype is None or smode is None:
        raise ValueError(f"projection {projection!r} / stereo mode {stereo_mode!r}: "
                         f"use one of {PROJECTIONS} / {STEREO_MODES}")
    top = list(_elements(data, 0, len(data)))
    segs = [t for t in top if t[0] == SEGMENT]
    if not segs or top[0][0] != EBML:
        raise ValueError(f"{name}: not a Matroska / WebM file (no EBML header and Segment)")
    _, seg_at, seg_ds, seg_de = segs[0]
    children = list(_elements(data, seg_ds, seg_de))
    if not any(c[0] == TRACKS for c in children):
        raise ValueError(f"{name}: no Tracks element")
    tagged = []

    def edit_tracks(eid, ds, de):
        if eid == TRACKENTRY and not tagged:
            kids = list(_elements(data, ds, de))
            if not any(k[0] == TRACKTYPE and _as_uint(data[k[2]:k[3]]) == 1 for k in kids):
                return None
            tagged.append(True)
            body = []
            for k, at, kds, kde in kids:
                if k == VIDEO:
                    keep = b"".join(data[a:e] for v, a, _, e in _elements(data, kds, kde)
                                    if v not in (STEREOMODE, PROJECTION))
                    proj = _uint(PROJECTIONTYPE, ptype)
                    if projection in ("cubemap", "mesh"):  # the `cbmp` / `mshp` payload (readers need it)
                        proj += _element(PROJECTIONPRIVATE, v2_boxes(projection, "mono")[1]
                                         .children[1].children[1].payload)
                    body.append(_element(VIDEO, keep + _uint(STEREOMODE, smode) + _element(PROJECTION, proj)))
                else:
                    body.append(data[at:kde])
            return _element(TRACKENTRY, b"".join(body))
        return None

    # pass 1: new bytes of each Segment child whose size can change (positions as 8-byte zeros)
    def positions(mapping):
        def edit(eid, ds, de):
            if eid in (SEEKPOSITION, CUECLUSTERPOSITION):
                return _uint(eid, mapping(_as_uint(data[ds:de])), 8)
            return None
        return edit

    def encode(mapping):
        out = []
        for eid, at, ds, de in children:
            if eid == TRACKS:
                out.append(_element(TRACKS, _rewrite(data, ds, de, edit_tracks)))
            elif eid in (SEEKHEAD, CUES):
                out.append(_element(eid, _rewrite(data, ds, de, positions(mapping))))
            else:
                out.append(data[at:de])
        return out

    first = encode(lambda pos: 0)
    if not tagged:
        raise ValueError(f"{name}: no video track")
    old_starts = [at - seg_ds for _, at, _, _ in children]
    new_starts, pos = [], 0
    for b in first:
        new_starts.append(pos)
        pos += len(b)

    def moved(old: int) -> int:  # a position relative to the Segment data → where it is now
        for o, n in zip(reversed(old_starts), reversed(new_starts)):
            if old >= o:
                return old - o + n
        return old

    tagged.clear()
    body = b"".join(encode(moved))
    return data[:seg_at] + _element(SEGMENT, body) + data[seg_de:]


def _mkv_projection(f, name: str) -> dict:
    out = {"projection": None, "stereo_mode": None}
    eid = _read_id(f)
    if eid != EBML:
        raise ValueError(f"{name}: not a Matroska / WebM file")
    f.seek(_read_size(f), 1)
    if _read_id(f) != SEGMENT:
        raise ValueError(f"{name}: no Segment after the EBML header")
    _read_size(f)
    for _ in range(4096):  # top-level elements before the first Cluster
        eid = _read_id(f)
        if eid is None or eid == CLUSTER:
            break
        size = _read_size(f)
        if eid != TRACKS:
            if size == UNKNOWN_SIZE:
                break
            f.seek(size, 1)
            continue
        if size == UNKNOWN_SIZE or size > MAX_HEADER_BYTES:
            raise ValueError(f"{name}: Tracks element declares {size} bytes (more than {MAX_HEADER_BYTES})")
        tracks = f.read(size)
        for te, _, ds, de in _elements(tracks, 0, len(tracks)):
            if te != TRACKENTRY:
                continue
            kids = list(_elements(tracks, ds, de))
            if not any(k[0] == TRACKTYPE and _as_uint(tracks[k[2]:k[3]]) == 1 for k in kids):
                continue
            for k, _, vds, vde in kids:
                if k != VIDEO:
                    continue
                for v, _, pds, pde in _elements(tracks, vds, vde):
                    if v == STEREOMODE:
                        mode = _as_uint(tracks[pds:pde])
                        out["stereo_mode"] = _MKV_STEREO.get(mode, f"stereo_{mode}")
                    elif v == PROJECTION:
                        for p, _, tds, tde in _elements(tracks, pds, pde):
                            if p == PROJECTIONTYPE:
                                t = _as_uint(tracks[tds:tde])
                                out["projection"] = _MKV_PROJ.get(t, f"projection_{t}")
            return out
        break
    return out


# ----------------------------------------------------------------------------------- reading
def _mp4_projection_file(f, size: int, name: str) -> dict:
    pos = 0
    while pos + 8 <= size:
        f.seek(pos)
        box_size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if box_size == 1:
            box_size, header = struct.unpack(">Q", f.read(8))[0], 16
        elif box_size == 0:
            box_size = size - pos
        if box_size < header:
            raise ValueError(f"{name}: box {kind!r} at byte {pos} has an impossible size {box_size}")
        if kind == b"moov":
            if box_size > MAX_HEADER_BYTES or pos + box_size > size:
                raise ValueError(f"{name}: moov box of {box_size} bytes (truncated, or over {MAX_HEADER_BYTES})")
            f.seek(pos)
            data = f.read(box_size)
            return _mp4_projection(_parse_box(data, b"moov", header, box_size, name))
        pos += box_size
    return {"projection": None, "stereo_mode": None}


def read_projection(path: str | os.PathLike) -> dict:
    """{"projection": equirectangular | cubemap | mesh | rectangular | None, "stereo_mode": mono |
    top-bottom | left-right | None} declared by an mp4 / mov (V1 or V2) or Matroska / WebM file;
    None where nothing is declared (other containers: both None). Raises ValueError on a header
    that cannot be parsed."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        f.seek(0)
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return _mkv_projection(f, str(path))
        if head[4:8] in (b"ftyp", b"moov", b"free", b"wide", b"mdat", b"skip"):
            return _mp4_projection_file(f, size, str(path))
    return {"projection": None, "stereo_mode": None}


# ------------------------------------------------------------- the generator's API (V1 equirect)
def inject_spherical_v1(data: bytes, name: str = "mp4") -> bytes:
    """mp4 bytes tagged as a mono equirectangular 360° video (Spherical Video V1)."""
    return tag_mp4(data, "equirectangular", "mono", version=1, name=name)


def read_spherical_v1(data: bytes, name: str = "mp4") -> dict[str, str] | None:
    """The GSpherical tags of the video track ({'Spherical': 'true', 'ProjectionType': …}), or None."""
    moov, *_ = _moov(data, name)
    trak = _video_trak(moov)
    for c in (trak.children if trak else []):
        if _is_v1(c):
            return v1_tags(c.payload[16:])
    return None


def tag_file(path: str | os.PathLike, projection: str = "equirectangular", stereo_mode: str = "mono",
             version: int = 1) -> Path:
    """Tag an mp4 (V1 / V2) or Matroska / WebM file in place (a temporary name, then renamed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    data = path.read_bytes()
    if data[:4] == b"\x1a\x45\xdf\xa3":
        tagged = tag_matroska(data, projection, stereo_mode, name=str(path))
    else:
        tagged = tag_mp4(data, projection, stereo_mode, version=version, name=str(path))
    partial = path.with_name(path.name + ".tagging")
    partial.write_bytes(tagged)
    os.replace(partial, path)
    return path


def tag_equirect_mp4(path: str | os.PathLike) -> Path:
    """Tag an mp4 file in place as a mono equirectangular 360° video (Spherical Video V1)."""
    return tag_file(path)
