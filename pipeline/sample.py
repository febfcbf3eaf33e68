"""Video-level decoding: probe a fetched source, read its declared projection, decode the frames
the video filters look at.

A Ray Data task (`SampleFrames`, after the `download` stage put the source at `local_path`): one
row per source video in, the same row out with `frames` (num_frames, H, W, 3) uint8 at the
analysis size, the probed width / height / fps / duration, the declared `projection` and
`stereo_mode` (shards.spherical; "" when the file declares none), and `error` / `error_stage` /
`error_reason` when anything fails. Bad inputs get short reason codes: empty_file,
truncated_file, not_a_video, no_video_stream, resolution_too_large, bad_metadata, decode_failed.
"""
from __future__ import annotations

import hashlib
import struct
import time
from pathlib import Path

import av
import numpy as np

from shards.spherical import read_projection
from shards.video import decode_frames, probe

from .config import CurateConfig
from .download import DownloadError

ISO_BMFF_SUFFIXES = (".mp4", ".m4v", ".mov", ".3gp")


def iso_bmff_truncated(path: Path) -> bool:
    """True when an mp4/mov's top-level boxes run past the end of the file (cut-off download)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= size:
            f.seek(pos)
            box_size, kind = struct.unpack(">I4s", f.read(8))
            if pos == 0 and kind != b"ftyp":
                return False  # not an ISO-BMFF file at all
            if box_size == 1:
                box_size = struct.unpack(">Q", f.read(8))[0]
            elif box_size == 0:  # box extends to the end of the file
                return False
            if box_size < 8:
                return False
            pos += box_size
        return pos > size


def classify_error(exc: Exception, path: Path | None) -> tuple[str, str]:
    """(stage, reason code) of a failure to fetch / open / decode a source."""
    if isinstance(exc, DownloadError):
        return "download", exc.reason
    msg = str(exc)
    if isinstance(exc, FileNotFoundError):
        return "download", "missing_path"
    if "zero bytes" in msg or "empty" in msg.lower() and "file" in msg:
        return "decode", "empty_file"
    if path is not None and path.suffix.lower() in ISO_BMFF_SUFFIXES and path.is_file():
        try:
            if iso_bmff_truncated(path):
                return "decode", "truncated_file"
        except (OSError, struct.error):
            pass
    if "no video stream" in msg:
        return "decode", "no_video_stream"
    if "cannot be read as a video" in msg:
        return "decode", "not_a_video"
    return "decode", "decode_failed"


class ResolutionError(ValueError):
    pass


def frame_indices(video_id: str, num_available: int, count: int, seed: int) -> np.ndarray:
    """`count` sorted distinct frame indices spread over the video at random (one per equal span),
    reproducible from the video id and seed: the same video gets the same frames on every run."""
    digest = hashlib.sha1(f"{seed}:{video_id}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    count = min(count, num_available)
    edges = np.linspace(0, num_available, count + 1)
    picks = np.floor(edges[:-1] + rng.uniform(0, 1, count) * np.diff(edges)).astype(np.int64)
    return np.unique(np.clip(picks, 0, num_available - 1))


def check_declared_size(path: Path, max_pixels: int) -> None:
    """Refuse a video whose header declares a frame larger than max_pixels, before any decoding
    (a hostile or broken header must not make a worker allocate gigabytes)."""
    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            if not streams:
                return  # probe reports the missing video stream
            w, h = streams[0].codec_context.width, streams[0].codec_context.height
    except (av.FFmpegError, OSError, ValueError):
        return  # unreadable: probe names the problem
    if w and h and w * h > max_pixels:
        raise ResolutionError(f"{path}: declared frame size {w}x{h} exceeds sample.max_pixels = {max_pixels}")


class MetadataError(ValueError):
    pass


def sample_one(path: Path, video_id: str, cfg: CurateConfig) -> dict:
    """Probe and sample one local video. Raises on any failure (see classify_error)."""
    if path.is_file() and path.stat().st_size > 0:
        check_declared_size(path, cfg.sample.max_pixels)
    info = probe(path)
    try:
        declared = read_projection(path)
    except (ValueError, OSError) as e:
        raise MetadataError(f"{path}: unreadable spherical metadata ({e})") from e
    idx = frame_indices(video_id, info.num_frames, cfg.sample.num_frames, cfg.sample.seed)
    frames = decode_frames(path, indices=idx, size=(cfg.sample.width, cfg.sample.height))
    # "" for undeclared: one column type in every Ray block
    return dict(frames=frames, width=info.width, height=info.height, fps=info.fps, num_frames=info.num_frames,
                duration_s=info.duration_s, projection=declared["projection"] or "",
                stereo_mode=declared["stereo_mode"] or "")


class SampleFrames:
    """Ray Data task body (stateless, a class only to carry the config): adds frames + probe info."""

    def __init__(self, cfg: CurateConfig):
        self.cfg = cfg

    def __call__(self, batch: dict) -> dict:
        n = len(batch["video_id"])
        empty = np.zeros((0, self.cfg.sample.height, self.cfg.sample.width, 3), np.uint8)
        out = {k: [] for k in ("frames", "width", "height", "fps", "num_frames", "duration_s", "projection",
                               "stereo_mode", "error", "error_stage", "error_reason", "t_sample")}
        errors = batch.get("error", [""] * n)
        for i in range(n):
            t0 = time.perf_counter()
            row = dict(frames=empty, width=0, height=0, fps=np.nan, num_frames=0, duration_s=np.nan,
                       projection="", stereo_mode="")
            err, stage, reason = errors[i], batch.get("error_stage", [""] * n)[i], batch.get("error_reason", [""] * n)[i]
            if not (isinstance(err, str) and err):  # not failed before (manifest, download)
                path = Path(str(batch["local_path"][i]))
                try:
                    row = sample_one(path, str(batch["video_id"][i]), self.cfg)
                    err = stage = reason = ""
                except Exception as e:  # noqa: BLE001 - a bad input is an error row, not a crash
                    if isinstance(e, ResolutionError):
                        stage, reason = "decode", "resolution_too_large"
                    elif isinstance(e, MetadataError):
                        stage, reason = "decode", "bad_metadata"
                    else:
                        stage, reason = classify_error(e, path)
                    err = f"{type(e).__name__}: {e}"
            for k, v in row.items():
                out[k].append(v)
            out["error"].append(err)
            out["error_stage"].append(stage)
            out["error_reason"].append(reason)
            out["t_sample"].append(time.perf_counter() - t0)
        batch = dict(batch)
        for k, v in out.items():
            batch[k] = v if k == "frames" else np.asarray(
                v, dtype=object if k.startswith("error") or k in ("projection", "stereo_mode") else None)
        return batch
