"""Clips: split a surviving video into fixed-length clips, cut and encode each with ffmpeg.

Cutting goes through `ffmpeg-python` argument lists (never a shell string) and the ffmpeg binary
from `shards.video.ffmpeg_exe()`. The seek is `-ss` before `-i` *with re-encoding*, which ffmpeg
makes frame-accurate (it seeks to the keyframe before and decodes and drops frames up to the
start time: `-accurate_seek`, on by default, given explicitly). A stream copy would instead start
at a keyframe (video2dataset #54). A clip has exactly round(duration · fps) frames (`-frames:v`),
at the configured clip size (W = 2H), H.264 yuv420p, faststart, no audio.

`CutClips` is the Ray Data task: one surviving video row in, one row per clip out, each with the
clip's mp4 bytes and the frames the clip filters need (`frames` at the analysis size and rate,
`frames_cuts` at 48×27, every frame, for TransNetV2).
"""
from __future__ import annotations

import math
import subprocess
import tempfile
import time
from pathlib import Path

import ffmpeg
import numpy as np

from shards.video import decode_frames, ffmpeg_exe, probe

from .config import ClipConfig, CurateConfig
from .download import fetch

CUTS_HW = (27, 48)


def plan_clips(duration_s: float, cfg: ClipConfig) -> list[tuple[float, float]]:
    """[(start_s, end_s)] of consecutive clips of cfg.duration_s; a shorter tail is kept only when
    it is at least cfg.min_duration_s long."""
    if not duration_s or not math.isfinite(duration_s) or duration_s <= 0:
        return []
    spans = []
    start = 0.0
    eps = 1e-6
    while start + cfg.min_duration_s <= duration_s + eps:
        end = min(start + cfg.duration_s, duration_s)
        if end - start + eps < min(cfg.duration_s, cfg.min_duration_s):
            break
        spans.append((round(start, 6), round(end, 6)))
        start += cfg.duration_s
        if cfg.max_clips_per_video is not None and len(spans) >= cfg.max_clips_per_video:
            break
    return spans


def clip_fps(src_fps: float, cfg: ClipConfig) -> float:
    return float(min(src_fps, cfg.max_fps)) if cfg.max_fps else float(src_fps)


def cut_args(src: str | Path, dst: str | Path, start_s: float, num_frames: int, fps: float,
             src_fps: float, cfg: ClipConfig) -> list[str]:
    """The ffmpeg argument list for one clip (see module doc)."""
    h = cfg.height
    stream = ffmpeg.input(str(src), ss=f"{start_s:.6f}", accurate_seek=None).video
    if abs(fps - src_fps) > 1e-3:
        stream = stream.filter("fps", fps=fps)
    stream = stream.filter("scale", 2 * h, h, flags="area")
    out = ffmpeg.output(stream, str(dst), **{"frames:v": num_frames}, vcodec="libx264", pix_fmt="yuv420p",
                        crf=cfg.crf, preset=cfg.preset, movflags="+faststart", an=None,
                        g=max(1, int(round(2 * fps))), threads=1)
    return out.overwrite_output().compile(cmd=ffmpeg_exe())


def cut_clip(src: str | Path, start_s: float, end_s: float, src_fps: float, cfg: ClipConfig) -> bytes:
    """mp4 bytes of [start_s, end_s) of src, re-encoded at the clip size."""
    fps = clip_fps(src_fps, cfg)
    num_frames = max(1, int(round((end_s - start_s) * fps)))
    with tempfile.TemporaryDirectory(prefix="clip-") as tmp:
        dst = Path(tmp) / "clip.mp4"
        args = cut_args(src, dst, start_s, num_frames, fps, src_fps, cfg)
        try:  # a stuck ffmpeg (bad input, a hung network source) must not stall the worker forever
            proc = subprocess.run(args, capture_output=True, timeout=cfg.ffmpeg_timeout_s)
        except subprocess.TimeoutExpired:  # subprocess.run has killed it
            raise TimeoutError(f"ffmpeg cutting {src} at {start_s:.3f}s timed out after "
                               f"{cfg.ffmpeg_timeout_s:g} s (clips.ffmpeg_timeout_s)") from None
        if proc.returncode != 0 or not dst.exists() or dst.stat().st_size == 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"ffmpeg failed cutting {src} at {start_s:.3f}s: {' | '.join(tail)}")
        return dst.read_bytes()


def analysis_frames(mp4: bytes, cfg: ClipConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Frames of a clip for the clip filters: (analysis frames, 48×27 frames, analysis fps)."""
    info = probe(mp4)
    fps = min(cfg.analysis_fps, info.fps)
    count = max(2, int(info.duration_s * fps))
    count = min(count, info.num_frames)
    idx = np.unique(np.round(np.linspace(0, info.num_frames - 1, count)).astype(np.int64))
    frames = decode_frames(mp4, indices=idx, size=(2 * cfg.analysis_height, cfg.analysis_height))
    real_fps = (len(idx) - 1) / max(1e-6, (idx[-1] - idx[0]) / info.fps) if len(idx) > 1 else fps
    cuts = decode_frames(mp4, size=(CUTS_HW[1], CUTS_HW[0]))
    return frames, cuts, float(real_fps)


class CutClips:
    """Ray Data flat_map body: an accepted video row → its clip rows (with errors as rows)."""

    def __init__(self, cfg: CurateConfig, cache_dir: str):
        self.cfg, self.cache_dir = cfg, cache_dir

    def __call__(self, row: dict) -> list[dict]:
        cfg = self.cfg.clips
        base = {k: row[k] for k in row if k != "frames"}
        spans = plan_clips(float(row["duration_s"]), cfg)
        out = []
        try:
            path = fetch(str(row["source"]), self.cfg.download, self.cache_dir)
        except Exception as e:  # noqa: BLE001 - e.g. a cache on another node that cannot refetch
            path, fetch_error = None, f"{type(e).__name__}: {e}"
        for index, (start, end) in enumerate(spans):
            t0 = time.perf_counter()
            clip = dict(base, clip_index=index, num_clips=len(spans), start_s=start, end_s=end,
                        mp4=b"", clip_fps=np.nan, clip_num_frames=0, analysis_fps=np.nan,
                        error="", error_stage="", error_reason="")
            empty = np.zeros((0, cfg.analysis_height, 2 * cfg.analysis_height, 3), np.uint8)
            frames, cuts = empty, np.zeros((0,) + CUTS_HW + (3,), np.uint8)
            try:
                if path is None:
                    raise RuntimeError(fetch_error)
                mp4 = cut_clip(path, start, end, float(row["fps"]), cfg)
                frames, cuts, a_fps = analysis_frames(mp4, cfg)
                info = probe(mp4)
                clip.update(mp4=mp4, clip_fps=info.fps, clip_num_frames=info.num_frames, analysis_fps=a_fps)
            except Exception as e:  # noqa: BLE001 - one failed clip is an error row
                clip.update(error=f"{type(e).__name__}: {e}", error_stage="cut", error_reason="cut_failed")
            clip.update(frames=frames, frames_cuts=cuts, t_cut=time.perf_counter() - t0)
            out.append(clip)
        return out  # the download is released when the video is finished (pipeline.curate)
