"""The real media in ../shared/data/samples through the video-level filters and thresholds."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import CurateConfig
from pipeline.filters.format import format_scores
from pipeline.filters.intra_frame import IntraFrameScores
from pipeline.sample import sample_one
from pipeline.thresholds import decide
from shards.video import write_mp4

from .conftest import REPO, SAMPLES

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} (shared sample media) not present")


@pytest.fixture(scope="module")
def setup():
    cfg = CurateConfig.from_yaml(REPO / "configs" / "curate" / "local.yaml")
    return cfg, IntraFrameScores(cfg.filters.intra_frame)


def video_level(path: Path, cfg, intra, tmp: Path) -> tuple[dict, tuple]:
    row = sample_one(path, path.stem, cfg)
    scores = format_scores(row["frames"], row["width"], row["height"], cfg.filters.format)
    scores.update(intra.scores(row["frames"]), lpips_backbone=intra.backbone)
    only = {"video": {k: v for k, v in cfg.thresholds["video"].items() if k in ("format", "intra_frame")}}
    return scores, decide(scores, only, "video")


def still_video(image: Path, out: Path, size: tuple[int, int] | None = None) -> Path:
    """A short video of a still (optionally resized to W x H first), as the issue asks."""
    bgr = cv2.imread(str(image))
    h, w = bgr.shape[:2]
    size = size or (w // 4 * 2 // 2 * 2, h // 4 * 2 // 2 * 2)
    rgb = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)[..., ::-1]
    return write_mp4(out, np.repeat(rgb[None], 12, axis=0), fps=12)


def test_mono_equirect_passes_format_and_intra_frame(setup, tmp_path):
    cfg, intra = setup
    scores, verdict = video_level(SAMPLES / "testRoom1_1920Mono.mp4", cfg, intra, tmp_path)
    assert verdict[0] == "accepted", (verdict, scores)


@pytest.mark.parametrize("name, size", [("testRoom1_2kStereo.jpg", None), ("cubemap.jpg", None),
                                        ("testRoom1_2kStereo.jpg", (1024, 512)), ("cubemap.jpg", (1024, 512))])
def test_stereo_and_cubemap_stills_are_rejected(setup, tmp_path, name, size):
    """At their own aspect ratio and also squeezed to 2:1 (so the content, not the shape, decides)."""
    cfg, intra = setup
    video = still_video(SAMPLES / name, tmp_path / "still.mp4", size)
    scores, verdict = video_level(video, cfg, intra, tmp_path)
    assert verdict[0] == "rejected" and verdict[1] in ("format", "intra_frame"), (verdict, scores)
    if size is not None:
        assert verdict[2] != "aspect_ratio"
