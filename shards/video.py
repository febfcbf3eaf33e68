"""Video I/O shared by every package: encode clips to mp4 bytes, probe, and decode chosen frames.

Encoding and decoding go through PyAV (libav in-process, no subprocess per clip). The ffmpeg
*binary* is only needed by code that cuts clips with `ffmpeg-python`; `ffmpeg_exe()` finds it.

`src` arguments are a path (str / PathLike) or the mp4 bytes themselves (as stored in a shard).

Decoding is budgeted, because videos come from anyone (a 200 KB file can declare 8192×8192 frames):
`decode_frames` refuses a source frame over `max_frame_pixels` (read from the header, before anything
is decoded) and an output over `max_video_pixels` in all (frames × output size), raising
`DecodeBudgetError` (a ValueError) that names the size and the limit. Frames are converted (and
resized, with `size=`) one at a time as they are decoded; only the output size is ever held.
"""
from __future__ import annotations

import bisect
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence, Union

import av
import numpy as np
from av.video.reformatter import VideoReformatter

VideoSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

MAX_FRAME_PIXELS = 8192 * 4096   # one source frame (8K equirect); 4K phone video is 3840×2160
MAX_VIDEO_PIXELS = 2**28         # all decoded output frames together: 268 M pixels = 805 MB as RGB uint8


class DecodeBudgetError(ValueError):
    """A video that would decode to more pixels than allowed (per frame or in all)."""


def check_frame_budget(width: int, height: int, max_frame_pixels: int | None, name: str = "video") -> None:
    if max_frame_pixels is not None and width * height > max_frame_pixels:
        raise DecodeBudgetError(
            f"{name}: frames are {width}×{height} = {width * height} pixels, over the limit of "
            f"{max_frame_pixels} pixels per frame (max_frame_pixels / --max-frame-pixels)")


def check_video_budget(count: int, width: int, height: int, max_video_pixels: int | None,
                       name: str = "video") -> None:
    if max_video_pixels is not None and count * width * height > max_video_pixels:
        raise DecodeBudgetError(
            f"{name}: {count} frames of {width}×{height} = {count * width * height} pixels, over the limit "
            f"of {max_video_pixels} pixels per video (max_video_pixels / --max-video-pixels; "
            f"sample fewer frames or a lower resolution)")


def fit_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    """(w, h) with the aspect kept, both even, the longer side at most `max_side`; None when the
    frame already fits (decode at the source size)."""
    if max_side is None or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: the system's when on PATH, else the one bundled in imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg  # imported lazily: only needed when there is no system ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    num_frames: int
    duration_s: float


def describe_source(src: VideoSource) -> str:
    """How error messages name a source: the path, or the size of in-memory bytes."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<mp4 bytes, {len(src)} B>"
    return str(src)


def _open(src: VideoSource) -> av.container.InputContainer:
    name = describe_source(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise ValueError(f"{name}: empty input (zero bytes), not a video")
        fileobj = io.BytesIO(bytes(src))
        try:
            return av.open(fileobj, mode="r")
        except (av.FFmpegError, OSError) as e:
            raise ValueError(f"{name}: cannot be read as a video ({e})") from e
    path = Path(src)
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{name}: empty file (zero bytes), not a video")
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError) as e:
        raise ValueError(f"{name}: cannot be read as a video ({e})") from e


def _video_stream(container, name: str):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise ValueError(f"{name}: no video stream (streams: {', '.join(kinds)})")
    return container.streams.video[0]


def _stream_fps(stream, name: str) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or float(rate) <= 0:
        raise ValueError(f"{name}: video stream has no usable frame rate")
    return float(rate)


def _packet_index(container, stream) -> tuple[list[int], list[int]] | None:
    """Presentation timestamps of every frame (sorted) and the indices of keyframes among them.

    Demuxing reads packets without decoding them, which is cheap next to decoding; it gives the
    exact frame-index → pts map needed to seek (also for variable frame rates) and to know where
    keyframes are, so a seek is only made when it skips work. None when timestamps are missing.
    """
    entries = []
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet at the end
            continue
        if packet.pts is None:
            return None
        entries.append((packet.pts, packet.is_keyframe))
    entries.sort()
    pts = [p for p, _ in entries]
    keyframes = [i for i, (_, key) in enumerate(entries) if key] or [0]
    return pts, keyframes


def probe(src: VideoSource) -> VideoInfo:
    """Width, height, frame rate, frame count and duration of the first video stream."""
    name = describe_source(src)
    with _open(src) as container:
        stream = _video_stream(container, name)
        fps = _stream_fps(stream, name)
        num_frames = int(stream.frames or 0)
        if num_frames <= 0:  # container keeps no count (e.g. mkv, raw h264): count packets
            index = _packet_index(container, stream)
            num_frames = len(index[0]) if index else 0
        if num_frames <= 0:
            raise ValueError(f"{name}: video stream holds no frames")
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise ValueError(f"{name}: video stream has no frame size")
    return VideoInfo(int(width), int(height), fps, num_frames, num_frames / fps)


def sample_indices(num_available: int, src_fps: float, fps: float | None = None,
                   num_frames: int | None = None, name: str = "video") -> np.ndarray:
    """Frame indices for sampling at `fps` (frame k is the one shown at t = k / fps), `num_frames` long.

    fps=None keeps the native rate. num_frames=None takes every sample that exists.
    """
    step = 1.0 if fps is None else src_fps / float(fps)
    if fps is not None and fps <= 0:
        raise ValueError(f"{name}: fps must be > 0, got {fps}")
    available = int(np.floor((num_available - 1) / step + 1e-9)) + 1 if num_available > 0 else 0
    count = available if num_frames is None else int(num_frames)
    if count <= 0:
        raise ValueError(f"{name}: num_frames must be > 0, got {num_frames}")
    if count > available:
        need_s = (count - 1) / float(fps or src_fps)
        raise ValueError(f"{name}: asked for {count} frames at {fps or src_fps:g} fps (a span of {need_s:.2f} s) "
                         f"but the video has {num_available} frames at {src_fps:g} fps "
                         f"({num_available / src_fps:.2f} s, {available} samples)")
    return np.floor(np.arange(count) * step + 1e-6).astype(np.int64)


def frame_rgb(frame, size, reformatter: VideoReformatter) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB (resized with area interpolation when size=(w, h)).
    The same pixels as `frame.to_ndarray(...)`, but through the caller's one reformatter per video:
    to_ndarray builds a new swscale context for every frame (1200 frames of 1024×512 to 48×27:
    1.72 s against 0.66 s with one context, the decode alone 0.45 s)."""
    if size is None:
        return reformatter.reformat(frame, format="rgb24").to_ndarray()
    w, h = size
    return reformatter.reformat(frame, format="rgb24", width=int(w), height=int(h), interpolation="AREA").to_ndarray()


def decode_frames(src: VideoSource, indices: Sequence[int] | None = None, fps: float | None = None,
                  num_frames: int | None = None, size: tuple[int, int] | None = None,
                  max_frame_pixels: int | None = MAX_FRAME_PIXELS,
                  max_video_pixels: int | None = MAX_VIDEO_PIXELS) -> np.ndarray:
    """Decode only the frames asked for, as (T, H, W, 3) uint8 RGB.

    indices: frame indices (any order, repeats allowed); or fps / num_frames (see `sample_indices`);
    or neither for every frame. size=(w, h) resizes in PyAV's reformat (area interpolation), frame
    by frame as decoded. Seeks to the keyframe before a wanted frame only when that skips frames we
    would decode anyway. The budget (module doc) is checked before decoding when the frame count is
    known, else as frames arrive; None turns a limit off.
    """
    name = describe_source(src)
    if indices is not None and (fps is not None or num_frames is not None):
        raise ValueError(f"{name}: give either indices or fps/num_frames, not both")
    if size is not None and (len(size) != 2 or min(size) <= 0):
        raise ValueError(f"{name}: size must be (width, height) > 0, got {size}")
    with _open(src) as container:
        stream = _video_stream(container, name)
        src_w, src_h = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        check_frame_budget(src_w, src_h, max_frame_pixels, name)
        out_w, out_h = (int(size[0]), int(size[1])) if size is not None else (src_w, src_h)
        stream.thread_type = "AUTO"
        src_fps = _stream_fps(stream, name)

        reformatter = VideoReformatter()

        def rgb(frame) -> np.ndarray:
            # the header may lie, or the size change mid-stream: check what the decoder gave
            check_frame_budget(frame.width, frame.height, max_frame_pixels, name)
            return frame_rgb(frame, size, reformatter)

        if indices is None and fps is None and num_frames is None:
            frames, held = [], 0
            for f in container.decode(stream):
                frames.append(rgb(f))
                held += frames[-1].shape[0] * frames[-1].shape[1]
                if max_video_pixels is not None and held > max_video_pixels:
                    check_video_budget(len(frames), frames[-1].shape[1], frames[-1].shape[0],
                                       max_video_pixels, f"{name} (stopped while decoding)")
            if not frames:
                raise ValueError(f"{name}: no frames could be decoded")
            return np.stack(frames)

        index = _packet_index(container, stream)
        if index is None:  # no timestamps: decode sequentially and count
            total = probe(src).num_frames
        else:
            pts_of, keyframes = index
            total = len(pts_of)
        if indices is None:
            wanted = sample_indices(total, src_fps, fps, num_frames, name)
        else:
            wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
            if wanted.size == 0:
                raise ValueError(f"{name}: indices is empty")
            bad = wanted[(wanted < 0) | (wanted >= total)]
            if bad.size:
                raise ValueError(f"{name}: frame indices {bad[:5].tolist()} out of range [0, {total})")
        check_video_budget(len(wanted), out_w, out_h, max_video_pixels, name)
        unique = sorted(set(wanted.tolist()))
        got: dict[int, np.ndarray] = {}

        if index is None:
            container.seek(0, stream=stream, backward=True, any_frame=False)
            wanted_set = set(unique)
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted_set:
                    got[i] = rgb(frame)
                if len(got) == len(unique):
                    break
        else:
            index_of = {p: i for i, p in enumerate(pts_of)}
            position = None  # index of the next frame the decoder will give, None = not started
            frames_iter = None
            for target in unique:
                key = keyframes[bisect.bisect_right(keyframes, target) - 1]
                if frames_iter is None or position is None or target < position or key > position:
                    # seeking skips work: the keyframe before `target` lies ahead of where we are
                    container.seek(pts_of[key], stream=stream, backward=True, any_frame=False)
                    frames_iter = container.decode(stream)
                    position = None
                for frame in frames_iter:
                    i = index_of.get(frame.pts)
                    if i is None:
                        continue
                    position = i + 1
                    if i == target:
                        got[i] = rgb(frame)
                        break
                    if i > target:  # overshot (seek landed late): cannot happen with backward seek
                        break
                if target not in got:
                    raise ValueError(f"{name}: frame {target} could not be decoded")
    return np.stack([got[i] for i in wanted.tolist()])


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    t, h, w, _ = frames.shape
    if t == 0:
        raise ValueError("frames is empty (T = 0)")
    if h % 2 or w % 2:
        raise ValueError(f"frame size must be even for yuv420p, got width={w} height={h}")
    return frames


# x264's output bytes depend on the machine: on its thread count (x264's default, "auto", follows the
# cores) and on the assembly it picks for the CPU. Measured (PyAV 18.1, FFmpeg 8.1.2, AMD EPYC with
# AVX-512): SSE2-only and SSE4/AVX/AVX2 code make different decisions (11095 vs 11176 bytes for the
# same 12 frames), and the same frames encoded 20 times in one process gave up to 6 different outputs
# with the CPU's own assembly on one thread and up to 9 with C code on 4 threads; C code on one
# thread gave one output for every input tried. So `bit_exact=True` (what the synthetic corpus uses:
# it promises byte-identical files for a seed) runs x264's C code on one thread: the same bytes on
# every CPU, ~4.5× the CPU time of the assembly (512×256, 48 frames: 1.5 s instead of 0.34 s).
# Otherwise x264 runs its assembly on X264_THREADS threads (a bound, so that many encoders on one
# node do not each start threads for every core). Either way the RGB → YUV 4:2:0 conversion is
# single-threaded and bit-exact rather than swscale's default, which picks CPU-specific SIMD paths.
X264_THREADS = 4
X264_BIT_EXACT = {"x264-params": "asm=0"}  # with one thread
_TO_YUV = dict(format="yuv420p", threads=1, interpolation=(
    av.video.reformatter.Interpolation.BILINEAR | av.video.reformatter.Interpolation.ACCURATE_RND
    | av.video.reformatter.Interpolation.BITEXACT))


def _encode(target, frames: np.ndarray, fps: float, crf: int, keyint_s: float, bit_exact: bool) -> None:
    frames = _check_frames(frames)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    _, h, w, _ = frames.shape
    with av.open(target, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # a keyframe every keyint_s seconds keeps random access into a clip cheap (decode_frames seeks)
        stream.options = {"crf": str(int(crf)), "g": str(max(1, round(keyint_s * float(rate)))),
                          **(X264_BIT_EXACT if bit_exact else {})}
        stream.codec_context.thread_count = 1 if bit_exact else X264_THREADS
        reformatter = VideoReformatter()  # one swscale context for the clip, not one per frame
        for rgb in frames:
            yuv = reformatter.reformat(av.VideoFrame.from_ndarray(rgb, format="rgb24"), **_TO_YUV)
            for packet in stream.encode(yuv):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def encode_mp4(frames: np.ndarray, fps: float, crf: int = 20, keyint_s: float = 2.0,
               bit_exact: bool = False) -> bytes:
    """Encode (T, H, W, 3) uint8 RGB frames to H.264 yuv420p mp4 bytes (faststart). H, W must be even.
    bit_exact: the same bytes for the same frames on every CPU and in every run, at ~4.5× the CPU
    time on one thread (see X264_BIT_EXACT)."""
    # the faststart pass re-opens the output by name, so libav must write a real file, not a BytesIO
    with tempfile.TemporaryDirectory(prefix="encode_mp4-") as tmp:
        path = Path(tmp) / "clip.mp4"
        _encode(str(path), frames, fps, crf, keyint_s, bit_exact)
        return path.read_bytes()


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float, crf: int = 20,
              keyint_s: float = 2.0, bit_exact: bool = False) -> Path:
    """`encode_mp4` to a file (parents created); written under a temporary name, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp.mp4")
    try:
        _encode(str(partial), frames, fps, crf, keyint_s, bit_exact)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
