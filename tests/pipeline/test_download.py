"""Downloads (pipeline.download) offline: yt-dlp's own format selection on format lists shaped like
the 360-1M parquet's, yt-dlp's real errors (a local HTTP server on 127.0.0.1, a registered test
extractor raising YouTube's messages), the per-source cache, the circuit breaker and the slots."""
from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yt_dlp
from yt_dlp.extractor.common import InfoExtractor
from yt_dlp.utils import ExtractorError

from pipeline.config import DownloadConfig
from pipeline.download import (MARKER, Breaker, DownloadError, FetchSources, cache_entry, classify_ytdlp,
                               download_slot, fetch, format_selector, release, ytdlp_options)
from shards.video import encode_mp4

PARQUET_360 = Path(__file__).resolve().parents[3] / "shared" / "data" / "360-1M-Filtered_24k.parquet"
# YouTube's DASH video itags by height: (mp4 / H.264, webm / VP9)
ITAGS = {2160: (266, 313), 1440: (264, 271), 1080: (137, 248), 720: (136, 247), 480: (135, 244), 360: (134, 243)}


def parquet_formats(row_format: str, width: int, height: int, served: str) -> list[dict]:
    """A YouTube format list for one 360-1M row: its recorded best format (`format` column, e.g.
    "313 - 3840x1920 (2160s, mesh)+251 - audio only (medium)"), the ladder below it in mp4 and webm,
    with format_note as yt-dlp writes it ("<label>, <projection>"); `served` is the projection of
    the ladder (mesh: what a browser user agent gets; equirectangular: an empty one)."""
    m = re.match(r"(\d+) - (\d+)x(\d+) \(([^)]*)\)", row_format)
    best = dict(format_id=m[1], width=int(m[2]), height=int(m[3]), format_note=m[4], ext="webm",
                vcodec="vp09.00.50.08", acodec="none", url="https://x/best", protocol="https")
    out = [best, dict(format_id="251", ext="webm", vcodec="none", acodec="opus", format_note="medium",
                      url="https://x/a", protocol="https")]
    for label, (mp4_itag, webm_itag) in ITAGS.items():
        scale = label / max(2160, 1)
        h = int(round(height * scale / 2)) * 2
        w = int(round(width * scale / 2)) * 2
        for itag, ext, vcodec in ((mp4_itag, "mp4", "avc1.640033"), (webm_itag, "webm", "vp9")):
            out.append(dict(format_id=str(itag), ext=ext, width=w, height=h, vcodec=vcodec, acodec="none",
                            format_note=f"{label}p, {served}", url=f"https://x/{itag}", protocol="https"))
    return out


_YDL = []


def _ydl() -> yt_dlp.YoutubeDL:
    if not _YDL:
        _YDL.append(yt_dlp.YoutubeDL(ytdlp_options(DownloadConfig(), "/nonexistent/%(id)s")))
    return _YDL[0]


def select(spec: str, formats: list[dict]) -> list[dict]:
    """yt-dlp's own path: sort the formats worst → best (YoutubeDL.sort_formats), then select."""
    ydl = _ydl()
    info = dict(id="x", formats=[dict(f) for f in formats])
    ydl.sort_formats(info)
    return list(ydl.build_format_selector(spec)(dict(formats=info["formats"], has_merged_format=False,
                                                     incomplete_formats=False)))


@pytest.fixture(scope="module")
def parquet_rows():
    if not PARQUET_360.is_file():
        pytest.skip(f"{PARQUET_360} not present")
    df = pd.read_parquet(PARQUET_360, columns=["format", "width", "height", "like_count"])
    df = df[(df["like_count"] > 50) & df["format"].str.match(r"\d+ - \d+x\d+ \(")]
    assert df["format"].str.contains("mesh").mean() > 0.99  # what the issue found: mesh bests
    return pd.concat([df.drop_duplicates("format").head(12), df.head(4)])  # distinct shapes


def test_selector_takes_equirect_up_to_the_height_cap_never_mesh(parquet_rows):
    spec = format_selector(1080)
    for r in parquet_rows.itertuples():
        # what a browser user agent is served: a mesh ladder only. Nothing to take.
        assert select(spec, parquet_formats(r.format, int(r.width), int(r.height), "mesh")) == []
        # the authors' empty user agent: an equirect ladder next to the mesh best
        got = select(spec, parquet_formats(r.format, int(r.width), int(r.height), "equirectangular"))
        assert len(got) == 1, r.format
        assert "mesh" not in got[0]["format_note"] and got[0]["ext"] == "mp4"
        fitting = [f["height"] for f in parquet_formats(r.format, int(r.width), int(r.height), "equirectangular")
                   if f.get("height") and f["height"] <= 1080 and f["ext"] == "mp4"]
        assert got[0]["height"] == max(fitting)  # the tallest that fits the cap, not 4K
        # yt-dlp's default on what a browser is served: the mesh best the parquet records
        assert "mesh" in select("bestvideo", parquet_formats(r.format, int(r.width), int(r.height),
                                                                 "mesh"))[0]["format_note"]


def test_selector_falls_back_to_webm_and_plain_links_and_refuses_stereo():
    webm_only = [dict(format_id="248", ext="webm", height=960, width=1920, vcodec="vp9", acodec="none",
                      format_note="1080p, equirectangular", url="u", protocol="https"),
                 dict(format_id="313", ext="webm", height=1920, width=3840, vcodec="vp9", acodec="none",
                      format_note="2160p, equirectangular", url="u", protocol="https")]
    assert [f["format_id"] for f in select(format_selector(1080), webm_only)] == ["248"]
    assert [f["format_id"] for f in select(format_selector(2160), webm_only)] == ["313"]
    stereo = [dict(format_id="137", ext="mp4", height=2160, width=2160, vcodec="avc1", acodec="none",
                   format_note="1080p, equirectangular_threed_top_bottom", url="u", protocol="https")]
    assert select(format_selector(4000), stereo) == []
    direct = [dict(format_id="0", ext="mp4", url="http://127.0.0.1/v.mp4", protocol="http")]  # no height, no note
    assert [f["format_id"] for f in select(format_selector(1080), direct)] == ["0"]


# ------------------------------------------------------------------------------ a local server
class Handler(http.server.BaseHTTPRequestHandler):
    seen: list = []
    files: dict = {}

    def do_GET(self):  # noqa: N802
        Handler.seen.append(dict(path=self.path, ua=self.headers.get("User-Agent")))
        m = re.fullmatch(r"/status/(\d+)/.*", self.path)
        if m:
            self.send_error(int(m[1]))
            return
        body = Handler.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Handler.files["/v.mp4"] = encode_mp4(np.random.default_rng(0).integers(0, 255, (4, 32, 64, 3), np.uint8), 4)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def fetch_error(url: str, tmp_path: Path, **cfg) -> DownloadError:
    with pytest.raises(DownloadError) as e:
        fetch(url, DownloadConfig(retries=0, timeout_s=5, **cfg), tmp_path / "cache")
    return e.value


def test_http_download_sends_an_empty_user_agent_and_caches_complete_files(server, tmp_path):
    url = f"{server}/v.mp4"
    path = fetch(url, DownloadConfig(retries=0), tmp_path / "cache")
    assert path.read_bytes() == Handler.files["/v.mp4"]
    assert path.parent == cache_entry(url, tmp_path / "cache") and (path.parent / MARKER).is_file()
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".")] == [path.name]  # no .part
    assert [s["ua"] for s in Handler.seen if s["path"] == "/v.mp4"][-1] in ("", None)
    n = len(Handler.seen)
    assert fetch(url, DownloadConfig(retries=0), tmp_path / "cache") == path and len(Handler.seen) == n  # cached
    assert release(url, tmp_path / "cache", DownloadConfig()) and not path.parent.exists()


def test_http_errors_are_classified(server, tmp_path):
    e = fetch_error(f"{server}/status/404/v.mp4", tmp_path)
    assert (e.reason, e.permanent, e.reject) == ("not_found", True, True)
    for status, reason in ((429, "rate_limited"), (503, "server_error")):
        e = fetch_error(f"{server}/status/{status}/v.mp4", tmp_path)
        assert (e.reason, e.permanent) == (reason, False), status
    e = fetch_error(f"http://127.0.0.1:{closed_port()}/v.mp4", tmp_path)
    assert (e.reason, e.permanent) == ("network", False)


# YouTube's messages, as yt-dlp's YouTube extractor raises them (playability reasons + its hints)
YOUTUBE_MESSAGES = {
    "private": ("Private video. Sign in if you've been granted access to this video", "private_video", True),
    "removed": ("Video unavailable. This video has been removed by the uploader", "removed", True),
    "unavailable": ("Video unavailable", "unavailable", True),
    "age": ("Sign in to confirm your age. This video may be inappropriate for some users. Use --cookies",
            "age_restricted", True),
    "copyright": ("Video unavailable. This video contains content from SME, who has blocked it on copyright "
                  "grounds", "copyright", True),
    "bot": ("Sign in to confirm you’re not a bot. Use --cookies-from-browser or --cookies for the "
            "authentication", "bot_check", False),
    "ratelimit": ("This content isn't available, try again later. The current session has been rate-limited "
                  "by YouTube for up to an hour", "rate_limited", False),
    "noformat": ("Requested format is not available. Use --list-formats for a list of available formats",
                 "no_equirect_format", True),
}


class FakeTubeIE(InfoExtractor):
    _VALID_URL = r"faketube:(?P<id>\w+)"
    IE_NAME = "faketube"

    def _real_extract(self, url):
        key = self._match_id(url)
        if key == "geo":
            self.raise_geo_restricted("The uploader has not made this video available in your country", ["DE"])
        raise ExtractorError(YOUTUBE_MESSAGES[key][0], expected=True, video_id=key)


def test_youtube_messages_through_ytdlp_are_classified():
    ydl = yt_dlp.YoutubeDL(ytdlp_options(DownloadConfig(), "/nonexistent/%(id)s"))
    ydl.add_info_extractor(FakeTubeIE())
    for key, expected in [(k, (v[1], v[2])) for k, v in YOUTUBE_MESSAGES.items()] + [("geo", ("geo_restricted", True))]:
        with pytest.raises(yt_dlp.utils.DownloadError) as e:
            ydl.extract_info(f"faketube:{key}", download=False, ie_key="FakeTube")
        assert classify_ytdlp(e.value) == expected, key


def test_breaker_opens_after_consecutive_transient_failures_and_stops_downloads(server, tmp_path):
    cfg = DownloadConfig(retries=0, timeout_s=5, breaker_after=2)
    breaker = Breaker(tmp_path / "cache", cfg.breaker_after)
    breaker.reset()
    for i in range(2):
        with pytest.raises(DownloadError):
            fetch(f"{server}/status/429/{i}.mp4", cfg, tmp_path / "cache", breaker)
    assert breaker.is_open()
    n = len(Handler.seen)
    with pytest.raises(DownloadError) as e:
        fetch(f"{server}/v.mp4", cfg, tmp_path / "cache", breaker)
    assert e.value.reason == "breaker_open" and len(Handler.seen) == n  # not attempted
    out = FetchSources(cfg, str(tmp_path / "cache"))({"video_id": np.array(["a"], object),
                                                      "source": np.array([f"{server}/v.mp4"], object)})
    assert (out["error_reason"][0], out["error_kind"][0]) == ("breaker_open", "transient")  # retried next run
    breaker.reset()
    assert fetch(f"{server}/v.mp4", cfg, tmp_path / "cache", breaker).is_file()
    # a permanent failure (the network works) resets the count
    breaker.record(False)
    breaker.record(True)
    assert breaker.state()["consecutive"] == 0 and not breaker.is_open()


def test_slots_cap_concurrent_downloads_per_node(tmp_path):
    held = []
    with download_slot(tmp_path, 2) as a:
        with download_slot(tmp_path, 2) as b:
            held += [a, b]
            got = []

            def third():
                with download_slot(tmp_path, 2, poll_s=0.05) as c:
                    got.append(c)

            t = threading.Thread(target=third)
            t.start()
            t.join(0.5)
            assert got == []  # both slots held: the third download waits
        t.join(5)
        assert got == [1]
    assert sorted(held) == [0, 1]


def test_release_deletes_only_what_it_downloaded(tmp_path):
    user = tmp_path / "my_videos"
    user.mkdir()
    (user / "foo.mp4").write_bytes(b"mine")
    cfg = DownloadConfig(cache_dir=str(user))
    # a url ending in foo.mp4 with the cache set to the user's folder: never the user's file
    url = "https://example.invalid/foo.mp4"
    assert cache_entry(url, user) != user and cache_entry(url, user).parent == user
    assert not release(url, user, cfg)  # no entry of ours: nothing deleted
    entry = cache_entry(url, user)
    entry.mkdir()
    (entry / "video.mp4").write_bytes(b"partial?")
    assert not release(url, user, cfg) and entry.exists()  # not marked as ours
    assert not release(str(user / "foo.mp4"), user, cfg)  # a local source is never deleted
    (entry / MARKER).write_text(url)
    assert not release(url, user, DownloadConfig(keep=True))
    assert release(url, user, cfg) and not entry.exists()
    assert (user / "foo.mp4").read_bytes() == b"mine"
