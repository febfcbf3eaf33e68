"""Pack clips into WebDataset tar shards `{prefix}-{index:06d}.tar` of about `max_bytes` each.

A shard is written as `{name}.tar.tmp` and renamed only when complete, so readers (which ignore
`.tmp`) never see a partial shard. Opening a writer removes this prefix's `.tmp` leftovers of a
killed run and numbers new shards after the highest existing one; a complete shard is never
overwritten. `on_shard_complete(path, keys)` runs after each rename: the curation pipeline records
progress there, so a clip counts as done exactly when its shard exists.

One writer per (directory, prefix) at a time: parallel writers need distinct prefixes.
"""
from __future__ import annotations

import io
import logging
import os
import re
import tarfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .reader import open_tar, parse_sample, tar_headers
from .schema import MEMBERS, ClipMeta, check_key, split_member_name, validate_meta

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 512 * 2**20  # WebDataset guidance: shards of 100 MB – 1 GB stream well
TAR_BLOCK = 512


def shard_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}.tar"


def shard_pattern(prefix: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(prefix)}-(\d{{6,}})\.tar$")


def next_shard_index(out_dir: str | os.PathLike, prefix: str) -> int:
    """One past the highest `{prefix}-NNNNNN.tar` in out_dir (0 when there is none)."""
    pattern = shard_pattern(prefix)
    found = [int(m.group(1)) for p in Path(out_dir).iterdir() if (m := pattern.match(p.name))]
    return max(found) + 1 if found else 0


def thumbnail_jpg(mp4: bytes, width: int = 256, quality: int = 85) -> bytes:
    """A small JPEG of the clip's middle frame (the `jpg` member), `width` pixels wide."""
    import cv2

    from .video import decode_frames, probe

    info = probe(mp4)
    height = max(2, round(width * info.height / info.width / 2) * 2)
    rgb = decode_frames(mp4, indices=[info.num_frames // 2], size=(width, height))[0]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("thumbnail: JPEG encoding failed")
    return buf.tobytes()


def _padded(size: int) -> int:
    return -(-size // tarfile.RECORDSIZE) * tarfile.RECORDSIZE  # tar files end on whole records


def _member_bytes(size: int) -> int:
    return TAR_BLOCK + -(-size // TAR_BLOCK) * TAR_BLOCK  # header + data padded to whole blocks


class ShardWriter:
    """Context manager writing samples (`mp4`, `json`, `jpg` members) into size-capped tar shards.

    >>> with ShardWriter("run/shards", prefix="clips", max_bytes=256 << 20) as w:
    ...     w.write(meta.key, mp4_bytes, meta)          # jpg made from the middle frame if None
    ...     w.write_members(key, {"mp4": …, "json": …, "jpg": …})  # bytes copied from another shard
    """

    def __init__(self, out_dir: str | os.PathLike, prefix: str = "clips",
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 on_shard_complete: Optional[Callable[[Path, list[str]], None]] = None,
                 max_samples: Optional[int] = None):
        if not re.match(r"^[A-Za-z0-9_.-]+$", prefix):
            raise ValueError(f"prefix {prefix!r} must use only [A-Za-z0-9_.-]")
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        if max_samples is not None and max_samples <= 0:
            raise ValueError(f"max_samples must be > 0, got {max_samples}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prefix, self.max_bytes, self.max_samples = prefix, int(max_bytes), max_samples
        self.on_shard_complete = on_shard_complete
        for leftover in self.out_dir.glob(f"{glob_escape(prefix)}-*.tar.tmp"):
            log.warning("removing partial shard left by an interrupted run: %s", leftover)
            leftover.unlink()
        self.next_index = next_shard_index(self.out_dir, prefix)
        self.shards: list[Path] = []  # completed by this writer, in order
        self.num_samples = 0
        self._keys_seen: set[str] = set()
        self._tar: Optional[tarfile.TarFile] = None
        self._tmp_path: Optional[Path] = None
        self._keys: list[str] = []
        self._bytes = 0

    # -- writing --------------------------------------------------------------------------------
    def write(self, key: str, mp4: bytes, meta: dict | ClipMeta, jpg: bytes | None = None) -> None:
        """Add one sample; `meta` is validated against the schema and must describe `key`."""
        members = checked_members(key, mp4, meta)
        if key in self._keys_seen:
            raise ValueError(f"key {key!r} was already written by this writer")
        members["jpg"] = bytes(jpg if jpg is not None else thumbnail_jpg(members["mp4"]))
        self._append(key, members)

    def write_members(self, key: str, members: dict[str, bytes]) -> None:
        """Add one sample whose member bytes are taken as they are (copied out of another shard:
        nothing decoded or re-encoded, the `json` bytes kept). The json must parse, follow the
        schema and describe `key`; members are `mp4`, `json` and optionally `jpg`."""
        check_key(key)
        if set(members) - set(MEMBERS):
            raise ValueError(f"{key}: unexpected member(s) {sorted(set(members) - set(MEMBERS))} (allowed: {MEMBERS})")
        parse_sample({"__key__": key, **members}, url=f"sample {key}")  # the reader's rule for a sample
        if key in self._keys_seen:
            raise ValueError(f"key {key!r} was already written by this writer")
        self._append(key, {ext: bytes(members[ext]) for ext in MEMBERS if ext in members})

    def _append(self, key: str, members: dict[str, bytes]) -> None:
        size = sum(_member_bytes(len(v)) for v in members.values())
        full = self._tar is not None and (
            _padded(self._bytes + size) > self.max_bytes
            or (self.max_samples is not None and len(self._keys) >= self.max_samples))
        if full:
            self._finish_shard()
        if self._tar is None:
            self._start_shard()
        add_members(self._tar, key, members)
        self._bytes += size
        self._keys.append(key)
        self._keys_seen.add(key)
        self.num_samples += 1

    def _start_shard(self) -> None:
        while (self.out_dir / shard_name(self.prefix, self.next_index)).exists():
            self.next_index += 1  # someone wrote one meanwhile: never overwrite
        self._tmp_path = self.out_dir / (shard_name(self.prefix, self.next_index) + ".tmp")
        self._tar = tarfile.open(self._tmp_path, mode="w", format=tarfile.GNU_FORMAT)
        self._keys, self._bytes = [], 2 * TAR_BLOCK  # the end-of-archive blocks

    def _finish_shard(self) -> None:
        tar, tmp, keys = self._tar, self._tmp_path, self._keys
        self._tar, self._tmp_path, self._keys = None, None, []
        tar.close()
        fsync(tmp)
        final = self.out_dir / shard_name(self.prefix, self.next_index)
        while not link_new(tmp, final):  # someone wrote that name meanwhile: take the next
            self.next_index += 1
            final = self.out_dir / shard_name(self.prefix, self.next_index)
        tmp.unlink(missing_ok=True)
        self.next_index += 1
        self.shards.append(final)
        log.info("wrote %s (%d samples)", final, len(keys))
        if self.on_shard_complete is not None:
            self.on_shard_complete(final, list(keys))

    def _discard_shard(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tmp_path.unlink(missing_ok=True)
            log.warning("discarded unfinished shard with %d samples", len(self._keys))
        self._tar, self._tmp_path, self._keys = None, None, []

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Finish the current shard (if it holds samples)."""
        if self._tar is not None and self._keys:
            self._finish_shard()
        else:
            self._discard_shard()

    def abort(self) -> None:
        """Drop the current shard: its samples are not reported complete and can be redone."""
        self._discard_shard()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # after an error the open shard may hold a half-written sample: drop it (its clips were
        # never reported complete, so a resumed run redoes them)
        if exc_type is None:
            self.close()
        else:
            self.abort()


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def checked_members(key: str, mp4: bytes, meta: dict | ClipMeta) -> dict[str, bytes]:
    """The mp4 and json members of one sample, after the checks every writer makes: a valid key,
    metadata that follows the schema and describes `key`, non-empty mp4 bytes."""
    check_key(key)
    clip = validate_meta(meta, where=f"metadata of {key}")
    if clip.key != key:
        raise ValueError(f"key {key!r} does not match its metadata "
                         f"(video_id={clip.video_id!r}, clip_index={clip.clip_index} → {clip.key!r})")
    if not isinstance(mp4, (bytes, bytearray)) or len(mp4) == 0:
        raise ValueError(f"{key}: mp4 must be non-empty bytes")
    return {"mp4": bytes(mp4), "json": clip.to_json()}


def add_members(tar: tarfile.TarFile, key: str, members: dict[str, bytes]) -> None:
    """Append `KEY.EXT` members to an open tar, in the dict's order."""
    for ext, data in members.items():
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: same input → same bytes
        tar.addfile(info, io.BytesIO(data))


def fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def link_new(tmp: Path, final: Path) -> bool:
    """Put the finished file `tmp` at `final` without ever overwriting (link, which fails when `final`
    exists: an atomic rename that refuses); False when `final` already exists. The caller removes tmp."""
    try:
        os.link(tmp, final)
        return True
    except FileExistsError:
        return False
    except OSError:  # filesystem without hard links
        if final.exists():
            return False
        os.replace(tmp, final)
        return True


def content_shard_name(prefix: str, keys: list[str]) -> str:
    """`{prefix}-{digest}.tar`, a name fixed by the shard's keys: many writers (Ray workers on
    several nodes) can write into one directory without coordinating, and a retried task that
    writes the same clips again arrives at the same name (write_shard then keeps the first)."""
    import hashlib

    if not re.match(r"^[A-Za-z0-9_.-]+$", prefix):
        raise ValueError(f"prefix {prefix!r} must use only [A-Za-z0-9_.-]")
    digest = hashlib.sha1("\n".join(sorted(keys)).encode()).hexdigest()[:20]
    return f"{prefix}-{digest}.tar"


def write_shard(path: str | os.PathLike, samples: list[tuple[str, bytes, dict | ClipMeta, bytes]]) -> bool:
    """Write one complete shard of (key, mp4, meta, jpg) samples at `path`, atomically: into
    `path.tmp` (unique to this process), fsync, then a link that never overwrites. Returns False,
    writing nothing, when `path` already exists (a retry of a task whose first attempt committed)."""
    path = Path(path)
    if path.exists():
        return False
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, mode="w", format=tarfile.GNU_FORMAT) as tar:
            seen = set()
            for key, mp4, meta, jpg in samples:
                members = checked_members(key, mp4, meta)
                if key in seen:
                    raise ValueError(f"key {key!r} is repeated in {path.name}")
                seen.add(key)
                add_members(tar, key, {**members, "jpg": bytes(jpg)})
        fsync(tmp)
        if not link_new(tmp, path):
            return False
        log.info("wrote %s (%d samples)", path, len(samples))
        return True
    finally:
        tmp.unlink(missing_ok=True)


def rewrite_without(path: str | os.PathLike, drop: set[str]) -> int:
    """Rewrite the shard at `path` without the samples whose key is in `drop` (tmp + replace, so a
    reader sees the old or the new shard, never a partial one); remove it when nothing is left.
    Returns the number of samples kept."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    kept = set()
    try:
        with open_tar(str(path)) as src, tarfile.open(tmp, mode="w", format=tarfile.GNU_FORMAT) as dst:
            for info in tar_headers(src):
                try:
                    key = split_member_name(info.name)[0]  # the reader's rule for a member's key
                except ValueError:
                    key = None  # not a sample member: kept as it is, counted as no sample
                if key in drop or not info.isreg():
                    continue
                dst.addfile(info, src.extractfile(info))
                if key is not None:
                    kept.add(key)
        if not kept:
            path.unlink()
            return 0
        fsync(tmp)
        os.replace(tmp, path)
        return len(kept)
    finally:
        tmp.unlink(missing_ok=True)
