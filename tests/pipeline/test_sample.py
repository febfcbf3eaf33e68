"""Bad inputs become error rows with reasons (no Ray: the SampleFrames task body directly)."""
import subprocess

import numpy as np
import pytest

from pipeline.config import CurateConfig
from pipeline.download import FetchSources
from pipeline.sample import SampleFrames, frame_indices, iso_bmff_truncated
from shards.video import ffmpeg_exe, write_mp4


def make_bad_inputs(d):
    """Every kind of bad input the issue lists, as files (and sources) in d."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "zero_byte.mp4").write_bytes(b"")
    (d / "text_file.mp4").write_text("this is not a video\n" * 20)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-c:a", "aac", "-y", str(d / "audio_only.mp4")], check=True)
    frames = np.random.default_rng(0).integers(0, 255, (12, 64, 128, 3), dtype=np.uint8)
    write_mp4(d / "whole.mp4", frames, fps=12)
    data = (d / "whole.mp4").read_bytes()
    (d / "whole.mp4").unlink()
    # faststart puts the index first: cut the tail so the media data box runs past the end
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    # a raw y4m header declaring 16384x8192: probe reads it, nothing that large is decoded
    (d / "huge.y4m").write_bytes(b"YUV4MPEG2 W16384 H8192 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\0" * 1024)
    return {
        "zero_byte": (str(d / "zero_byte.mp4"), "empty_file"),
        "text_file": (str(d / "text_file.mp4"), "not_a_video"),
        "audio_only": (str(d / "audio_only.mp4"), "no_video_stream"),
        "truncated": (str(d / "truncated.mp4"), "truncated_file"),
        "huge": (str(d / "huge.y4m"), "resolution_too_large"),
        "missing": (str(d / "does_not_exist.mp4"), "missing_path"),
        "unreachable": ("http://127.0.0.1:9/video.mp4", "network"),
    }


def fetch_and_sample(cfg, batch, cache):
    """The `download` stage then the `sample` stage, as the pipeline runs them."""
    return SampleFrames(cfg)(FetchSources(cfg.download, str(cache))(batch))


def test_bad_inputs_are_error_rows_with_reasons(tmp_path):
    bad = make_bad_inputs(tmp_path / "bad")
    cfg = CurateConfig.from_dict({"download": {"retries": 1, "backoff_s": 0.01, "timeout_s": 5}})
    batch = {"video_id": np.array(list(bad), dtype=object),
             "source": np.array([s for s, _ in bad.values()], dtype=object)}
    out = fetch_and_sample(cfg, batch, tmp_path / "cache")
    got = dict(zip(out["video_id"], out["error_reason"]))
    assert got == {k: reason for k, (_, reason) in bad.items()}
    assert all(e for e in out["error"]) and all(f.size == 0 for f in out["frames"])
    stages = dict(zip(out["video_id"], out["error_stage"]))
    assert stages["missing"] == stages["unreachable"] == "download" and stages["zero_byte"] == "decode"


def test_good_video_is_sampled_reproducibly(tmp_path):
    frames = np.random.default_rng(1).integers(0, 255, (30, 64, 128, 3), dtype=np.uint8)
    write_mp4(tmp_path / "v.mp4", frames, fps=10)
    cfg = CurateConfig.from_dict({"sample": {"num_frames": 5, "width": 64, "height": 32}})
    batch = {"video_id": np.array(["v"], dtype=object), "source": np.array([str(tmp_path / "v.mp4")], dtype=object)}
    a = fetch_and_sample(cfg, dict(batch), tmp_path)
    b = fetch_and_sample(cfg, dict(batch), tmp_path)
    assert a["error"][0] == "" and a["frames"][0].shape == (5, 32, 64, 3)
    assert np.array_equal(a["frames"][0], b["frames"][0])
    assert (a["width"][0], a["height"][0], a["num_frames"][0]) == (128, 64, 30)
    assert not iso_bmff_truncated(tmp_path / "v.mp4")


def test_frame_indices_spread_and_depend_on_the_video():
    idx = frame_indices("a", 1000, 8, seed=0)
    assert len(idx) == 8 and np.all(np.diff(idx) > 0) and idx[0] < 125 and idx[-1] >= 875
    assert not np.array_equal(idx, frame_indices("b", 1000, 8, seed=0))
    assert np.array_equal(frame_indices("v", 5, 8, 0), np.arange(5))
