"""A stuck ffmpeg (here: a fake one that sleeps) becomes an error row within clips.ffmpeg_timeout_s."""
import os
import time

from pipeline.clips import CutClip, cut_clip
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
    row = CutClip(curate, str(tmp_path / "cache"))({"source": str(src), "video_id": "v", "duration_s": 2.0,
                                                    "fps": 12.0, "clip_index": 0, "start_s": 0.0, "end_s": 2.0})
    assert row["error_reason"] == "cut_failed"
    assert row["error"].startswith("TimeoutError: ffmpeg cutting") and row["mp4"] == b""
