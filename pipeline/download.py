"""Getting a manifest's source onto local disk, where ffmpeg and PyAV can read it.

- a local path is used where it is, as an absolute path to a regular file (a device, a pipe or a
  missing file is a `missing_path` error; an absolute path also keeps ffmpeg from reading a
  `pipe:` / `concat:` / `subfile,,` protocol or a leading `-` out of a file name);
- an fsspec URL whose scheme is in `download.fsspec_schemes` (s3://, gs://, …) is copied into the cache;
- an http(s) URL or a YouTube id (`youtube:ID`) is downloaded with yt-dlp, with the format selector
  of `format_selector` (equirect, no mesh / cube map / stereo, height <= download.max_height) and
  an empty User-Agent (what the 360-1M authors' downloader sends: YouTube then serves equirect
  streams instead of its "mesh" cube-map ones);
- anything else (`memory://`, `pipe:`, `concat:`, `data:`, …) is an `unsupported_source` error.

Failures are classified (`classify_ytdlp`): permanent ones (private, removed, unavailable, age or
geo restricted, copyright, 404, no equirect format) raise DownloadError(permanent=True) and become
`rejected` rows at stage `download`; transient ones (429, 5xx, time-outs, the bot check, network)
are retried here with back-off, then become `error` rows that the next run retries. A circuit
breaker (`Breaker`) opens after `download.breaker_after` consecutive transient failures: later
downloads are not attempted (their rows are retried by the next run) and the run exits non-zero.
Concurrent downloads per node are capped by `download.max_concurrent_per_node` lock files.

The cache (`cache_root`) holds one directory per source, named by a hash of the source and marked
as ours; only complete files sit there (downloads happen in a `.partial` sub-directory and are
renamed at the end). `release` deletes a source's directory, and only one that we made.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from .config import DownloadConfig

log = logging.getLogger(__name__)

YOUTUBE_PREFIX = "youtube:"
YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MARKER = ".argus360-download"  # in every cache entry we create; release() deletes nothing else
# yt-dlp puts YouTube's projectionType into format_note: "mesh" (cube map), "equirectangular",
# "equirectangular_threed_top_bottom" (stereo)
NOT_EQUIRECT_NOTES = ("mesh", "threed", "cubemap", "eac")


class DownloadError(RuntimeError):
    """A source that could not be fetched. `permanent`: retrying cannot help (not retried, here or
    by the next run); `reject`: a fact about the video (private, removed, …), so the row is
    `rejected` at stage download rather than an `error`; `counts`: towards the circuit breaker."""

    def __init__(self, reason: str, message: str, permanent: bool = False, counts: bool = True,
                 reject: bool = False):
        super().__init__(message)
        self.reason, self.permanent, self.counts, self.reject = reason, permanent, counts, reject


# ------------------------------------------------------------------------------------- sources
def source_kind(source: str) -> str:
    """'youtube', 'http', 'fsspec' or 'local' (or 'unsupported' for any other URL scheme)."""
    if source.startswith(YOUTUBE_PREFIX):
        return "youtube"
    scheme = urlparse(source).scheme.lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme == "file" or not scheme or len(scheme) == 1:  # len 1: a Windows drive letter
        return "local"
    return "fsspec"


def is_remote(source: str) -> bool:
    return source_kind(source) != "local"


def youtube_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"


def check_source(source: str, cfg: DownloadConfig) -> None:
    """Raise DownloadError (permanent) for a source no fetcher may touch."""
    if not source or any(c in source for c in "\x00\n\r"):
        raise DownloadError("unsupported_source", f"{source!r}: empty or holds control characters", True)
    kind = source_kind(source)
    if kind == "youtube" and not YOUTUBE_ID.fullmatch(source[len(YOUTUBE_PREFIX):]):
        raise DownloadError("unsupported_source", f"{source!r}: not a YouTube id ([A-Za-z0-9_-])", True)
    if kind == "fsspec" and urlparse(source).scheme.lower() not in cfg.fsspec_schemes:
        raise DownloadError("unsupported_source", f"{source!r}: URL scheme not allowed "
                            f"(download.fsspec_schemes: {', '.join(cfg.fsspec_schemes)})", True)
    if kind == "http" and not urlparse(source).hostname:
        raise DownloadError("unsupported_source", f"{source!r}: URL without a host", True)


# ---------------------------------------------------------------------------- format selection
def format_selector(max_height: int) -> str:
    """The yt-dlp format spec: the best video-only stream (clips carry no audio) at most
    max_height tall, declared equirectangular first, mp4 before webm, never a mesh / cube-map /
    stereo one; then a progressive format for plain http sources. `?`: fields a direct link
    lacks do not exclude it."""
    no = "".join(f"[format_note!*=?{w}]" for w in NOT_EQUIRECT_NOTES)
    h = f"[height<=?{int(max_height)}]"
    return "/".join([f"bestvideo{h}[ext={e}][format_note*=equirectangular]{no}" for e in ("mp4", "webm")]
                    + [f"bestvideo{h}[ext={e}]{no}" for e in ("mp4", "webm")] + [f"best{h}{no}"])


# ------------------------------------------------------------------------- error classification
PERMANENT = [  # (reason, pattern in yt-dlp's message); checked in order, before TRANSIENT
    ("age_restricted", r"confirm your age|age.restricted|inappropriate for some users"),
    ("private_video", r"private video|video is private"),
    ("copyright", r"copyright"),
    ("geo_restricted", r"not (?:made this video )?available in your country|geo.?restrict|from your location"),
    ("removed", r"has been removed|account .*terminated|no longer available|been deleted"),
    ("members_only", r"members.only|join this channel"),
    ("no_equirect_format", r"requested format is not available"),
    ("not_found", r"HTTP Error (?:404|410)"),
    ("unsupported_url", r"unsupported url"),
    ("unavailable", r"video unavailable|this video is unavailable|is not available|not available"),
]
TRANSIENT = [
    ("bot_check", r"not a bot|confirm you.?re not|sign in to confirm|captcha"),
    ("rate_limited", r"HTTP Error 429|too many requests|rate.limited|try again later"),
    ("server_error", r"HTTP Error 5\d\d"),
    ("timeout", r"timed? ?out"),
    ("network", r"connection|urlopen error|name or service|temporary failure|unreachable|unable to download"
                r"|network|errno|ssl|eof"),
]


def classify_ytdlp(exc: BaseException) -> tuple[str, bool]:
    """(reason, permanent) of a yt-dlp failure, from its exception classes and message."""
    import yt_dlp.utils as yu
    from yt_dlp.networking.exceptions import HTTPError

    inner = exc
    while getattr(inner, "exc_info", None) and inner.exc_info[1] is not None and inner.exc_info[1] is not inner:
        inner = inner.exc_info[1]
    if isinstance(inner, yu.GeoRestrictedError):
        return "geo_restricted", True
    if isinstance(inner, yu.UnsupportedError):
        return "unsupported_url", True
    status = getattr(inner, "status", None) if isinstance(inner, HTTPError) else None
    if status in (404, 410):
        return "not_found", True
    if status == 429:
        return "rate_limited", False
    if status is not None and status >= 500:
        return "server_error", False
    msg = f"{exc} {inner}".lower()
    for reason, pattern in PERMANENT:
        if reason == "not_found" or reason == "unavailable":
            continue
        if re.search(pattern, msg, re.I):
            return reason, True
    for reason, pattern in TRANSIENT:
        if re.search(pattern, msg, re.I):
            return reason, False
    for reason, pattern in PERMANENT:
        if re.search(pattern, msg, re.I):
            return reason, True
    return "download_failed", False  # unknown: retried by the next run rather than lost


# -------------------------------------------------------------------------------------- cache
def cache_root(cfg: DownloadConfig, run_dir: str | Path) -> Path:
    return Path(cfg.cache_dir or Path(run_dir) / "downloads").resolve()


def cache_entry(source: str, root: str | Path) -> Path:
    """The cache directory of one source (a hash of the source: two sources never share one)."""
    return Path(root) / ("src-" + hashlib.sha256(source.encode()).hexdigest()[:24])


def cached_file(entry: Path) -> Path | None:
    """The complete download in a cache entry (ours, renamed into place), or None."""
    if not (entry / MARKER).is_file():
        return None
    done = sorted(p for p in entry.glob("video.*") if p.is_file() and not p.name.endswith((".part", ".ytdl")))
    return done[0] if done else None


def release(source: str, root: str | Path, cfg: DownloadConfig) -> bool:
    """Delete a remote source's cache entry once its video is finished (not with download.keep;
    never a local source, never a directory that we did not create). True when deleted."""
    if cfg.keep or not is_remote(source):
        return False
    entry = cache_entry(source, root)
    if not (entry / MARKER).is_file() or entry.is_symlink() or entry.parent.resolve() != Path(root).resolve():
        return False
    shutil.rmtree(entry, ignore_errors=True)
    return True


@contextlib.contextmanager
def download_slot(root: Path, limit: int, poll_s: float = 0.2):
    """Hold one of `limit` per-node download slots (flock'ed files) while downloading."""
    d = root / ".slots" / re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())
    d.mkdir(parents=True, exist_ok=True)
    while True:
        for i in range(max(1, limit)):
            f = open(d / f"slot-{i}", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            try:
                yield i
                return
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()
        time.sleep(poll_s)


class Breaker:
    """The download circuit breaker: consecutive transient failures, shared by every worker through
    a small flock'ed JSON file in the cache root (which multi-node runs share)."""

    def __init__(self, root: Path, after: int):
        self.path, self.after = Path(root) / ".breaker.json", after

    @contextlib.contextmanager
    def _state(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            try:
                state = json.loads(f.read() or "{}")
            except ValueError:
                state = {}
            state.setdefault("consecutive", 0)
            state.setdefault("open", False)
            yield state
            f.seek(0)
            f.truncate()
            f.write(json.dumps(state))

    def reset(self) -> None:
        with self._state() as s:
            s.update(consecutive=0, open=False, last="")

    def is_open(self) -> bool:
        with self._state() as s:
            return bool(s["open"])

    def record(self, ok: bool, what: str = "") -> bool:
        """Count one download outcome; True when the breaker is (now) open."""
        with self._state() as s:
            s["consecutive"] = 0 if ok else s["consecutive"] + 1
            if not ok:
                s["last"] = what
            if self.after > 0 and s["consecutive"] >= self.after:
                s["open"] = True
            return bool(s["open"])

    def state(self) -> dict:
        with self._state() as s:
            return dict(s)


# ---------------------------------------------------------------------------------- fetching
class _YtdlpLog:
    def debug(self, msg):
        pass

    def info(self, msg):
        pass

    def warning(self, msg):
        log.debug("yt-dlp: %s", msg)

    def error(self, msg):
        log.debug("yt-dlp: %s", msg)


def ytdlp_options(cfg: DownloadConfig, outtmpl: str) -> dict:
    opts = {
        "format": cfg.format or format_selector(cfg.max_height), "outtmpl": outtmpl, "quiet": True,
        "no_warnings": True, "noprogress": True, "socket_timeout": cfg.timeout_s, "retries": 0,
        "fragment_retries": 0, "extractor_retries": 0, "noplaylist": True, "overwrites": True,
        "logger": _YtdlpLog(), "http_headers": {"User-Agent": cfg.user_agent}, "cachedir": False,
    }
    if cfg.cookies:
        opts["cookiefile"] = cfg.cookies
    return opts


def _yt_dlp(url: str, partial: Path, cfg: DownloadConfig) -> Path:
    import yt_dlp

    try:
        with yt_dlp.YoutubeDL(ytdlp_options(cfg, str(partial / "video.%(ext)s"))) as ydl:
            ydl.extract_info(url, download=True)
    except yt_dlp.utils.YoutubeDLError as e:
        reason, permanent = classify_ytdlp(e)
        raise DownloadError(reason, f"{url}: {e}", permanent, reject=permanent) from e
    found = [p for p in sorted(partial.glob("video.*")) if not p.name.endswith((".part", ".ytdl"))
             and not re.fullmatch(r"video\.f[\w-]+\.\w+", p.name)]  # not a format before merging
    if not found:
        raise DownloadError("download_failed", f"yt-dlp reported success but wrote no file for {url}")
    return found[0]


def _fsspec_copy(url: str, partial: Path, cfg: DownloadConfig) -> Path:
    """Copy `url` into `partial`; a copy that moves no data for download.timeout_s is a `timeout`
    (transient) error. fsspec backends have no common time-out setting (http has aiohttp's, s3fs
    botocore's, others none), so the copy runs in a daemon thread watched from here: a stuck store
    costs this worker one abandoned thread blocked on its socket, never the worker itself."""
    import fsspec

    suffix = re.sub(r"[^A-Za-z0-9.]", "", Path(urlparse(url).path).suffix)[:8] or ".mp4"
    dest = partial / f"video{suffix}"
    scratch = partial / f".copy-{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"  # this attempt's alone:
    copied, outcome = [0], {}  # an abandoned copy that wakes up later never writes into a retry's file

    def copy():
        try:
            with fsspec.open(url, "rb") as src, open(scratch, "wb") as out:
                while chunk := src.read(4 << 20):
                    out.write(chunk)
                    copied[0] += len(chunk)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
            outcome["error"] = e

    worker = threading.Thread(target=copy, name=f"fsspec copy {url}", daemon=True)
    worker.start()
    seen, since = -1, time.monotonic()
    while worker.is_alive():
        worker.join(min(1.0, cfg.timeout_s))
        if copied[0] != seen:
            seen, since = copied[0], time.monotonic()
        elif worker.is_alive() and time.monotonic() - since >= cfg.timeout_s:
            raise DownloadError("timeout", f"{url}: no data for {cfg.timeout_s:g} s after {copied[0]} bytes "
                                f"(download.timeout_s); copy abandoned")
    e = outcome.get("error")
    if isinstance(e, FileNotFoundError):
        raise DownloadError("not_found", f"{url}: {e}", permanent=True, reject=True) from e
    if e is not None:  # a store's failure is retried
        raise DownloadError("network", f"{url}: {type(e).__name__}: {e}") from e
    os.replace(scratch, dest)
    return dest


def with_retries(fn, what: str, cfg: DownloadConfig):
    """fn() retried cfg.retries times on transient DownloadErrors, back-off backoff_s · 2**attempt."""
    for attempt in range(cfg.retries + 1):
        try:
            return fn()
        except DownloadError as e:
            if e.permanent or attempt == cfg.retries:
                raise
            wait = cfg.backoff_s * 2 ** attempt
            log.warning("%s: attempt %d failed (%s); retrying in %.1f s", what, attempt + 1, e.reason, wait)
            time.sleep(wait)


def local_file(source: str) -> Path:
    path = Path(urlparse(source).path if source.startswith("file:") else source)
    try:
        path = path.absolute()
        exists, regular = path.exists(), path.is_file()
    except OSError as e:
        raise DownloadError("missing_path", f"{source}: {e}", permanent=True) from e
    if not exists:
        raise DownloadError("missing_path", f"{source}: no such file", permanent=True)
    if not regular:  # a directory, /dev/zero, /dev/stdin, a fifo: never opened
        raise DownloadError("missing_path", f"{source}: not a regular file", permanent=True)
    return path


def fetch(source: str, cfg: DownloadConfig, root: str | Path, breaker: Breaker | None = None) -> Path:
    """A local path holding `source` (downloaded into its cache entry when remote)."""
    check_source(source, cfg)
    kind = source_kind(source)
    if kind == "local":
        return local_file(source)
    entry = cache_entry(source, root)
    done = cached_file(entry)
    if done:
        return done
    if breaker is not None and breaker.is_open():
        raise DownloadError("breaker_open", f"{source}: not attempted: the download circuit breaker is open "
                            f"({breaker.after} consecutive transient failures)", counts=False)
    entry.mkdir(parents=True, exist_ok=True)
    (entry / MARKER).write_text(source + "\n")
    url = youtube_url(source[len(YOUTUBE_PREFIX):]) if kind == "youtube" else source

    def attempt():
        partial = entry / ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        got = _fsspec_copy(url, partial, cfg) if kind == "fsspec" else _yt_dlp(url, partial, cfg)
        final = entry / got.name
        os.replace(got, final)  # only complete files ever sit in the entry
        shutil.rmtree(partial, ignore_errors=True)
        return final

    with download_slot(Path(root), cfg.max_concurrent_per_node):
        if breaker is not None and breaker.is_open():  # opened while this one waited for a slot
            raise DownloadError("breaker_open", f"{source}: not attempted: the download circuit breaker is open",
                                counts=False)
        try:
            path = with_retries(attempt, url, cfg)
        except DownloadError as e:
            if breaker is not None:
                breaker.record(e.permanent or not e.counts, f"{e.reason}: {e}")
            shutil.rmtree(entry / ".partial", ignore_errors=True)
            raise
    if breaker is not None:
        breaker.record(True)
    return path


class FetchSources:
    """Ray Data task body of stage `download`: puts each row's source on local disk (`local_path`),
    or makes the row an error: a bad manifest value, a hostile source, a failed download. It holds
    only the CPU share of the `download` stage: a download mostly waits on the network."""

    def __init__(self, cfg: DownloadConfig, root: str):
        self.cfg, self.root = cfg, Path(root)
        self.breaker = Breaker(self.root, cfg.breaker_after)

    def __call__(self, batch: dict) -> dict:
        n = len(batch["video_id"])
        out = {k: [] for k in ("local_path", "error", "error_stage", "error_reason", "error_kind", "t_download")}
        manifest_errors = batch.get("manifest_error", [None] * n)
        for i in range(n):
            t0 = time.perf_counter()
            path, err, stage, reason, kind = "", "", "", "", ""
            bad = manifest_errors[i]
            if isinstance(bad, str) and bad:
                err, stage, reason, kind = bad, "manifest", "bad_value", ""
            else:
                source = str(batch["source"][i])
                try:
                    path = str(fetch(source, self.cfg, self.root, self.breaker))
                except DownloadError as e:
                    err, stage, reason = f"DownloadError: {e}", "download", e.reason
                    kind = "permanent" if e.reject else ("" if e.permanent else "transient")
                except Exception as e:  # noqa: BLE001 - a bad input is an error row, not a crash
                    err, stage, reason, kind = f"{type(e).__name__}: {e}", "download", "download_failed", "transient"
            for k, v in zip(out, (path, err, stage, reason, kind, time.perf_counter() - t0)):
                out[k].append(v)
        batch = dict(batch)
        for k, v in out.items():
            batch[k] = np.asarray(v, dtype=np.float64 if k.startswith("t_") else object)
        return batch
