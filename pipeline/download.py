"""Getting a manifest's source onto local disk, where ffmpeg and PyAV can read it.

- a local path is used where it is (a missing one is a `missing_path` error);
- an fsspec URL (s3://, gs://, memory://, …) is copied into the cache directory;
- an http(s) URL or a YouTube id (`youtube:ID`) is downloaded with yt-dlp.
Remote fetches are retried with exponential back-off; what still fails raises DownloadError,
which the pipeline turns into an `error` row (stage `download`), never a crash.
Fetching is idempotent: a finished download in the cache is reused (also by a later stage on
another node when the cache directory is shared).
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

from .config import DownloadConfig

log = logging.getLogger(__name__)

YOUTUBE_PREFIX = "youtube:"


class DownloadError(RuntimeError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def source_kind(source: str) -> str:
    """'youtube', 'http', 'fsspec' or 'local'."""
    if source.startswith(YOUTUBE_PREFIX):
        return "youtube"
    scheme = urlparse(source).scheme.lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme and scheme != "file" and len(scheme) > 1:  # len > 1: not a Windows drive letter
        return "fsspec"
    return "local"


def is_remote(source: str) -> bool:
    return source_kind(source) != "local"


def youtube_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"


def with_retries(fn, what: str, cfg: DownloadConfig):
    """fn() retried cfg.retries times with back-off cfg.backoff_s · 2**attempt; DownloadError at the end."""
    last = None
    for attempt in range(cfg.retries + 1):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - every failure of a remote fetch is retried
            last = e
            if attempt < cfg.retries:
                wait = cfg.backoff_s * 2 ** attempt
                log.warning("%s: attempt %d failed (%s); retrying in %.1f s", what, attempt + 1, e, wait)
                time.sleep(wait)
    raise DownloadError("download_failed", f"{what}: failed after {cfg.retries + 1} attempts: {last}")


def _yt_dlp(url: str, dest_stem: Path, cfg: DownloadConfig) -> Path:
    import yt_dlp

    opts = {
        "format": cfg.format, "outtmpl": str(dest_stem) + ".%(ext)s", "quiet": True, "no_warnings": True,
        "noprogress": True, "socket_timeout": cfg.timeout_s, "retries": 0, "noplaylist": True,
        "overwrites": True, "logger": log,
    }
    with yt_dlp.YoutubeDL(opts) as ydl:
        info = ydl.extract_info(url, download=True)
        path = Path(ydl.prepare_filename(info))
    if not path.exists():  # merged formats change the extension
        found = sorted(dest_stem.parent.glob(dest_stem.name + ".*"))
        found = [p for p in found if not p.name.endswith((".part", ".ytdl"))]
        if not found:
            raise RuntimeError(f"yt-dlp reported success but wrote no file for {url}")
        path = found[0]
    return path


def _fsspec_copy(url: str, dest: Path, cfg: DownloadConfig) -> Path:
    import fsspec

    partial = dest.with_name(dest.name + ".part")
    with fsspec.open(url, "rb") as src, open(partial, "wb") as out:
        shutil.copyfileobj(src, out, length=4 << 20)
    os.replace(partial, dest)
    return dest


def ensure_local(source: str, video_id: str, cfg: DownloadConfig, cache_dir: str | os.PathLike) -> Path:
    """A local path holding `source` (downloaded into cache_dir/video_id.* when remote)."""
    kind = source_kind(source)
    if kind == "local":
        path = Path(urlparse(source).path if source.startswith("file:") else source)
        if not path.exists():
            raise DownloadError("missing_path", f"{source}: no such file")
        if not path.is_file():
            raise DownloadError("missing_path", f"{source}: not a file")
        return path
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    done = [p for p in cache.glob(f"{video_id}.*") if not p.name.endswith((".part", ".ytdl"))]
    if done:
        return done[0]
    if kind == "fsspec":
        suffix = Path(urlparse(source).path).suffix or ".mp4"
        return with_retries(lambda: _fsspec_copy(source, cache / f"{video_id}{suffix}", cfg), source, cfg)
    url = youtube_url(source[len(YOUTUBE_PREFIX):]) if kind == "youtube" else source
    return with_retries(lambda: _yt_dlp(url, cache / video_id, cfg), url, cfg)


def release(source: str, path: Path, cfg: DownloadConfig) -> None:
    """Delete a downloaded copy once its clips are cut (local sources are never touched)."""
    if is_remote(source) and not cfg.keep:
        Path(path).unlink(missing_ok=True)
