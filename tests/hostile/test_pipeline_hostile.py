"""A stuck ffmpeg (here: a fake one that sleeps) becomes an error row within clips.ffmpeg_timeout_s."""
import os
import time

from pipeline.clips import CutClips, cut_clip
from pipeline.config import ClipConfig, CurateConfig

from .conftest import small_frames


def test_stuck_ffmpeg_times_out_as_an_error_row(tmp_path, fake_ffmpeg, monkeypatch):
    from shards.video import write_mp4

    src = write_mp4(tmp_path / "src.mp4", small_frames(num_frames=24), fps=12)
    monkeypatch.setenv("PATH", f"{fake_ffmpeg}:{os.environ['PATH']}")
    cfg = ClipConfig(duration_s=2.0, height=16, ffmpeg_timeout_s=1.0)
    t0 = time.perf_counter()
    try:
        cut_clip(src, 0.0, 2.0, 12.0, cfg)
        raised = None
    except TimeoutError as e:
        raised = str(e)
    assert raised is not None and "timed out after 1 s (clips.ffmpeg_timeout_s)" in raised and str(src) in raised
    assert time.perf_counter() - t0 < 20  # killed, not waited for (the fake sleeps 60 s)

    curate = CurateConfig.from_dict({"clips": {"duration_s": 2.0, "min_duration_s": 1.0, "height": 16,
                                               "ffmpeg_timeout_s": 1.0}})
    rows = CutClips(curate, str(tmp_path / "cache"))({"source": str(src), "video_id": "v", "duration_s": 2.0,
                                                      "fps": 12.0})
    assert len(rows) == 1 and rows[0]["error_reason"] == "cut_failed"
    assert rows[0]["error"].startswith("TimeoutError: ffmpeg cutting") and rows[0]["mp4"] == b""
