import json
import time
from pathlib import Path

import pandas as pd

import pytest

from pipeline.config import InputConfig
from pipeline.download import DownloadError, cached_file, cache_entry, fetch, source_kind
from pipeline.config import DownloadConfig
from pipeline.manifest import ManifestError, read_manifest

PARQUET_360 = Path(__file__).resolve().parents[3] / "shared" / "data" / "360-1M-Filtered_24k.parquet"


def test_directory_lists_videos_only(tmp_path):
    for name in ["b.mp4", "a b.MOV", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    df = read_manifest(tmp_path, InputConfig())
    assert df["video_id"].tolist() == ["a-b", "b"]
    assert all(Path(s).parent == tmp_path for s in df["source"])


def test_tables_with_path_or_url(tmp_path):
    pd.DataFrame({"path": ["v/one.mp4", "/abs/two.mp4"], "likes": [3, 70]}).to_csv(tmp_path / "m.csv", index=False)
    df = read_manifest(tmp_path / "m.csv", InputConfig(min_likes=50))
    assert df["source"].tolist() == ["/abs/two.mp4"] and df["likes"].tolist() == [70]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps({"url": u}) for u in
                                                ["https://example.com/x/clip.mp4", "s3://bucket/clip.mp4"]))
    df = read_manifest(tmp_path / "m.jsonl", InputConfig())
    assert df["video_id"].tolist()[0].startswith("clip-") and df["video_id"].nunique() == 2  # made unique
    pd.DataFrame({"title": ["x"]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ManifestError, match="needs a `path`, `url` or `id` column"):
        read_manifest(tmp_path / "bad.parquet", InputConfig())


@pytest.mark.skipif(not PARQUET_360.is_file(), reason=f"{PARQUET_360} not present")
def test_360_1m_parquet_likes_filter():
    df = read_manifest(PARQUET_360, InputConfig(min_likes=50))
    assert len(df) == 1167  # REFERENCE.md: likes > 50 keeps 1,167 of 24,596 rows
    assert df["source"].str.startswith("youtube:").all()
    assert df["video_id"].str.fullmatch(r"[A-Za-z0-9_-]+").all()
    assert (df["likes"] > 50).all() and df["category"].notna().any()


def test_source_kinds_and_local_fetch(tmp_path):
    assert [source_kind(s) for s in ["youtube:abc", "https://x/y.mp4", "s3://b/k.mp4", "/a/b.mp4", "file:///a"]] == \
        ["youtube", "http", "fsspec", "local", "local"]
    with pytest.raises(DownloadError) as e:
        fetch(str(tmp_path / "missing.mp4"), DownloadConfig(), tmp_path)
    assert e.value.reason == "missing_path"


def test_fsspec_source_is_copied_and_cached(tmp_path):
    import fsspec

    with fsspec.open("memory://bucket/v.mp4", "wb") as f:
        f.write(b"video-bytes")
    cfg = DownloadConfig(retries=0, fsspec_schemes=["memory"])  # memory:// only when allowed
    path = fetch("memory://bucket/v.mp4", cfg, tmp_path / "cache")
    assert path.read_bytes() == b"video-bytes" and path.parent == cache_entry("memory://bucket/v.mp4", tmp_path / "cache")
    fsspec.filesystem("memory").rm("bucket/v.mp4")
    assert fetch("memory://bucket/v.mp4", cfg, tmp_path / "cache") == path  # cached
    assert cached_file(path.parent) == path


def test_stuck_fsspec_store_is_a_transient_timeout_and_the_retry_starts_clean(tmp_path):
    """An ftp:// store that accepts the connection and never answers (ftplib waits for its greeting,
    fsspec's own time-out is 30 s): after download.timeout_s with no data the copy is abandoned."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    url = f"ftp://127.0.0.1:{server.getsockname()[1]}/v.mp4"
    cfg = DownloadConfig(retries=1, backoff_s=0.0, timeout_s=1.0, fsspec_schemes=["ftp"])
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as e:
        fetch(url, cfg, tmp_path / "cache")
    assert e.value.reason == "timeout" and not e.value.permanent, e.value
    assert "no data for 1 s" in str(e.value) and url in str(e.value)
    assert 2.0 <= time.monotonic() - t0 < 10.0  # two attempts of ~1 s each, not fsspec's 30 s
    assert cached_file(cache_entry(url, tmp_path / "cache")) is None
    server.close()


def test_bad_values_become_row_errors_naming_the_column(tmp_path):
    rows = [dict(path="a.mp4", like_count=3, duration=10), dict(path="b.mp4", like_count=-1, duration=10),
            dict(path="c.mp4", like_count="many", duration=10), dict(path="d.mp4", like_count=float("inf"), duration=5),
            dict(path="e.mp4", like_count=float("nan"), duration=5), dict(path="f.mp4", like_count=4, duration=-3),
            dict(path=None, like_count=4, duration=3), dict(path="a.mp4", like_count=3, duration=10)]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows).replace("Infinity", "1e999"))
    df = read_manifest(tmp_path / "m.jsonl", InputConfig())
    assert df.attrs["duplicates"] == 1 and len(df) == 7  # a.mp4 twice: one video
    errors = dict(zip(df["video_id"], df["manifest_error"]))
    assert errors["a"] is None
    assert "`like_count`" in errors["b"] and "negative" in errors["b"]
    assert "`like_count`" in errors["c"] and "not a number" in errors["c"]
    assert "`like_count`" in errors["d"] and "finite" in errors["d"]
    assert "`like_count`" in errors["e"] and "missing" in errors["e"]
    assert "`duration`" in errors["f"]
    assert any(isinstance(e, str) and "`path`" in e for e in errors.values())
    assert df["video_id"].is_unique


def test_same_youtube_id_twice_is_one_video(tmp_path):
    pd.DataFrame({"id": ["abc", "abc", "xyz"], "like_count": [60, 60, 70]}).to_parquet(tmp_path / "m.parquet")
    df = read_manifest(tmp_path / "m.parquet", InputConfig(min_likes=50))
    assert df["source"].tolist() == ["youtube:abc", "youtube:xyz"] and df.attrs["duplicates"] == 1
