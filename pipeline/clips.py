"""Clips: split a surviving video into fixed-length clips, cut and encode each with ffmpeg.

Cutting goes through `ffmpeg-python` argument lists (never a shell string) and the ffmpeg binary
from `shards.video.ffmpeg_exe()`. The seek is `-ss` before `-i` *with re-encoding*, which ffmpeg
makes frame-accurate (it seeks to the keyframe before and decodes and drops frames up to the
start time: `-accurate_seek`, on by default, given explicitly). A stream copy would instead start
at a keyframe (video2dataset #54). A clip has exactly round(duration · fps) frames (`-frames:v`),
at the configured clip size (W = 2H), H.264 yuv420p, faststart, no audio.

`PlanClips` turns a video row into clip rows (spans only, `clips.split: fixed | cut_aware`, placed
with the video's per-frame cut probabilities); `CutClip` cuts one clip and decodes the frames the
clip filters need (`frames` at the analysis size and rate) and its thumbnail, once.
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



def plan_clips(duration_s: float, cfg: ClipConfig, offset_s: float = 0.0) -> list[tuple[float, float]]:
    """[(start_s, end_s)] of consecutive clips of cfg.duration_s over [offset_s, offset_s +
    duration_s); a shorter tail is kept only when it is at least cfg.min_duration_s long."""
    if not duration_s or not math.isfinite(duration_s) or duration_s <= 0:
        return []
    spans = []
    start = 0.0
    eps = 1e-6
    while start + cfg.min_duration_s <= duration_s + eps:
        end = min(start + cfg.duration_s, duration_s)
        if end - start + eps < min(cfg.duration_s, cfg.min_duration_s):
            break
        spans.append((round(offset_s + start, 6), round(offset_s + end, 6)))
        start += cfg.duration_s
        if cfg.max_clips_per_video is not None and len(spans) >= cfg.max_clips_per_video:
            break
    return spans


def shots(cut_probs: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """[(first, end)) frame ranges between transitions: a frame whose TransNetV2 probability is
    above `threshold` belongs to a transition (a hard cut marks one or two frames, a dissolve a
    run of them) and to no shot."""
    inside = np.asarray(cut_probs) <= threshold
    out, first = [], None
    for i, ok in enumerate(inside):
        if ok and first is None:
            first = i
        elif not ok and first is not None:
            out.append((first, i))
            first = None
    if first is not None:
        out.append((first, len(inside)))
    return out


def plan_video(duration_s: float, fps: float, cut_probs: np.ndarray | None, cfg: ClipConfig,
               threshold: float) -> list[tuple[float, float, float]]:
    """[(start_s, end_s, cut_prob)] of one video's clips. `fixed` (the paper): consecutive windows
    from 0 s, each scored with the largest cut probability of its frames (a clip holding a cut is
    rejected by the `cuts` thresholds); `cut_aware`: the same windows laid inside each shot, so a
    video with a cut keeps its clean clips. Without cut probabilities (cuts failed or not run) the
    clips are the fixed ones with cut_prob NaN."""
    if cut_probs is None or len(cut_probs) == 0 or not fps or not math.isfinite(fps):
        return [(a, b, float("nan")) for a, b in plan_clips(duration_s, cfg)]
    probs = np.asarray(cut_probs, np.float32)
    if cfg.split == "cut_aware":
        spans = []
        for first, end in shots(probs, threshold):
            # a shot ends at the video's end or where the next transition starts
            length = min(end / fps, duration_s) - first / fps
            spans += plan_clips(length, cfg, offset_s=first / fps)
            if cfg.max_clips_per_video is not None and len(spans) >= cfg.max_clips_per_video:
                spans = spans[:cfg.max_clips_per_video]
                break
    else:
        spans = plan_clips(duration_s, cfg)
    out = []
    for a, b in spans:
        lo, hi = int(math.floor(a * fps + 1e-6)), int(math.ceil(b * fps - 1e-6))
        window = probs[max(0, lo):max(lo + 1, min(hi, len(probs)))]
        out.append((a, b, float(window.max()) if window.size else float("nan")))
    return out


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


def analysis_frames(mp4: bytes, cfg: ClipConfig) -> tuple[np.ndarray, float, object]:
    """Frames of a clip for the clip filters: (analysis frames, analysis fps, probe info)."""
    info = probe(mp4)
    fps = min(cfg.analysis_fps, info.fps)
    count = max(2, int(info.duration_s * fps))
    count = min(count, info.num_frames)
    idx = np.unique(np.round(np.linspace(0, info.num_frames - 1, count)).astype(np.int64))
    frames = decode_frames(mp4, indices=idx, size=(2 * cfg.analysis_height, cfg.analysis_height))
    real_fps = (len(idx) - 1) / max(1e-6, (idx[-1] - idx[0]) / info.fps) if len(idx) > 1 else fps
    return frames, float(real_fps), info


def thumbnail(frames: np.ndarray, width: int, quality: int = 85) -> bytes:
    """The shard's `jpg` member from the middle analysis frame (no extra decode of the clip)."""
    import cv2

    rgb = frames[len(frames) // 2]
    height = max(2, round(width * rgb.shape[0] / rgb.shape[1] / 2) * 2)
    small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(small[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("thumbnail: JPEG encoding failed")
    return buf.tobytes()


VIDEO_ROW = -1  # clip_index of the row that carries a video's own decision through the clip stages


class PlanClips:
    """Ray Data flat_map body (the video → clip boundary): a video row → the same row (clip_index
    -1, its per-frame cut probabilities dropped) and, when the video is accepted, one small row per
    clip span (no frames yet: CutClip makes them). Rows of one video, however long, are tiny, so a
    long video is as cheap here as a short one; the memory-heavy work is per clip downstream."""

    def __init__(self, cfg: CurateConfig, cut_threshold: float):
        self.cfg, self.threshold = cfg, cut_threshold

    def __call__(self, row: dict) -> list[dict]:
        cfg = self.cfg.clips
        probs = row.pop("cut_probs", None)
        base = dict(row, clip_index=VIDEO_ROW, start_s=np.nan, end_s=np.nan, cut_prob=np.nan, num_clips=0)
        if row.get("status") != "accepted":
            return [base]
        spans = plan_video(float(row["duration_s"]), float(row["fps"]), probs, cfg, self.threshold)
        if not spans:
            detail = f"duration {row.get('duration_s')} s < clips.min_duration_s"
            if cfg.split == "cut_aware" and probs is not None and len(probs):
                detail = f"no shot of at least clips.min_duration_s ({cfg.min_duration_s} s) between cuts"
            base.update(status="rejected", stage="clips", reason="too_short", detail=detail)
            return [base]
        base["num_clips"] = len(spans)
        clips = [dict(row, clip_index=i, start_s=a, end_s=b, cut_prob=p, num_clips=len(spans))
                 for i, (a, b, p) in enumerate(spans)]
        return [base] + clips


class CutClip:
    """Ray Data map body: one clip row → the row with the clip's mp4, its thumbnail and the
    analysis frames (errors as error rows). The video row passes through with empty columns."""

    def __init__(self, cfg: CurateConfig, cache_dir: str):
        self.cfg, self.cache_dir = cfg, cache_dir

    def __call__(self, row: dict) -> dict:
        cfg = self.cfg.clips
        t0 = time.perf_counter()
        frames = np.zeros((0, cfg.analysis_height, 2 * cfg.analysis_height, 3), np.uint8)
        row.update(mp4=b"", jpg=b"", clip_fps=np.nan, clip_num_frames=0, analysis_fps=np.nan)
        if int(row["clip_index"]) != VIDEO_ROW and not row.get("error"):
            try:
                path = fetch(str(row["source"]), self.cfg.download, self.cache_dir)
                mp4 = cut_clip(path, float(row["start_s"]), float(row["end_s"]), float(row["fps"]), cfg)
                frames, a_fps, info = analysis_frames(mp4, cfg)
                row.update(mp4=mp4, jpg=thumbnail(frames, cfg.thumbnail_width), clip_fps=info.fps,
                           clip_num_frames=info.num_frames, analysis_fps=a_fps)
            except Exception as e:  # noqa: BLE001 - one failed clip is an error row
                row.update(error=f"{type(e).__name__}: {e}", error_stage="cut", error_reason="cut_failed")
        row.update(frames=frames, t_cut=time.perf_counter() - t0 if int(row["clip_index"]) != VIDEO_ROW else 0.0)
        return row
