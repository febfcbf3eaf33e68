"""Clip planning with the per-video cuts (no Ray): TransNetV2 streamed over a video gives
predict_frames' probabilities; `clips.split: cut_aware` keeps clean clips of a video with a cut in
its middle where `fixed` (the paper) keeps none; shards written by workers and reconciled."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.clips import plan_video, shots
from pipeline.config import ClipConfig, CutsFilterConfig
from pipeline.filters.cuts import StreamingTransNet, VideoCuts, small_frames
from shards.reader import shard_index, shard_keys
from shards.schema import ClipMeta
from shards.writer import content_shard_name, rewrite_without, write_shard

THRESHOLD = 0.4  # local.yaml's cuts rule


@pytest.fixture(scope="module")
def cuts():
    return VideoCuts(CutsFilterConfig(device="cpu", batch_windows=3))


def hard_cut_video(corpus):
    src, labels = corpus
    return src / labels.loc[labels["kind"] == "hard_cut", "file"].iloc[0]


def test_streaming_windows_give_predict_frames_probabilities(corpus, cuts):
    frames = np.stack(list(small_frames(hard_cut_video(corpus))))
    frames = np.concatenate([frames] * 6)[:137]  # several windows, a partial last one, cuts inside
    ref, _ = cuts.net.model.predict_frames(torch.from_numpy(frames), quiet=True)
    got = StreamingTransNet(cuts.net.model, batch=2).probs(iter(frames))
    assert got.shape == (137,)
    np.testing.assert_allclose(got, ref.numpy().reshape(-1), atol=1e-5)
    assert (got > THRESHOLD).sum() >= 5  # the repeated hard cut is found every time


def test_cut_aware_keeps_clean_clips_where_fixed_keeps_none(corpus, cuts):
    """The synthetic hard cut: 3 s at 8 fps, the cut at 1.5 s. Clips of 2 s, a tail of >= 1.2 s
    kept: the fixed grid's only clip [0, 2) holds the cut; the shots on either side are 1.5 s."""
    path = hard_cut_video(corpus)
    probs = cuts.video_probs(str(path))
    assert probs.shape == (24,) and probs.max() > THRESHOLD and len(shots(probs, THRESHOLD)) == 2
    fixed = plan_video(3.0, 8.0, probs, ClipConfig(duration_s=2.0, min_duration_s=1.2, split="fixed"), THRESHOLD)
    aware = plan_video(3.0, 8.0, probs, ClipConfig(duration_s=2.0, min_duration_s=1.2, split="cut_aware"),
                       THRESHOLD)
    assert [p > THRESHOLD for _, _, p in fixed] == [True]  # rejected by the cuts rule: no clean clip
    clean = [(a, b) for a, b, p in aware if p <= THRESHOLD]
    assert len(clean) >= 1 and all(b - a >= 1.2 for a, b in clean)
    assert all(b <= 1.5 or a >= 1.5 for a, b in clean)  # none straddles the cut
    assert ClipConfig().split == "fixed"  # the default is the paper's


def meta(key: str) -> ClipMeta:
    vid, idx = key.rsplit("_", 1)
    return ClipMeta(video_id=vid, clip_index=int(idx), source="x.mp4", start_s=0.0, end_s=1.0, fps=8.0,
                    num_frames=8, width=256, height=128, category=None, likes=None, scores={}, config_hash="h")


def test_worker_shards_are_content_named_and_reconciled(tmp_path):
    from pipeline.curate import reconcile_shards

    mp4 = b"\0\0\0\x18ftypisom" + b"\0" * 64
    a = [(k, mp4, meta(k), b"\xff\xd8jpg") for k in ("v_0000", "v_0001")]
    name = content_shard_name("clips", [k for k, *_ in a])
    assert name == content_shard_name("clips", ["v_0001", "v_0000"])  # a retry finds the same name
    assert write_shard(tmp_path / name, a) and not write_shard(tmp_path / name, a)  # never overwritten
    # a retried task after a lost worker wrote v_0001 again, in a shard of its own
    other = content_shard_name("clips", ["v_0001"])
    write_shard(tmp_path / other, a[1:])
    assert not list(tmp_path.glob("*.tmp"))
    decisions = pd.DataFrame([dict(video_id="v", clip_index=None, status="accepted", key=None, shard=None),
                              dict(video_id="v", clip_index=0, status="accepted", key="v_0000", shard=name),
                              dict(video_id="v", clip_index=1, status="accepted", key="v_0001", shard=other)])
    fixed = reconcile_shards(tmp_path, decisions)
    assert fixed == dict(shards_rewritten=1, clips_removed=1)
    assert shard_keys(str(tmp_path / name)) == ["v_0000"] and shard_keys(str(tmp_path / other)) == ["v_0001"]
    # a clip now rejected leaves the shards; an emptied shard is removed
    decisions.loc[2, "status"] = "rejected"
    reconcile_shards(tmp_path, decisions)
    assert set(shard_index(tmp_path)) == {"v_0000"} and not (tmp_path / other).exists()
    assert rewrite_without(tmp_path / name, set()) == 1


def transitions(a: np.ndarray, b: np.ndarray, rng) -> dict[str, np.ndarray]:
    """120-frame test videos at 48×27 between two still scenes (sensor noise ±1): no change, a
    hard cut, dissolves of 20 and 60 frames, a fade through black — all around frame 60."""
    n = 120
    t = np.arange(n, dtype=np.float32)[:, None, None, None]

    def blend(w):
        return np.clip((1 - w) * a[None] + w * b[None] + rng.integers(-1, 2, (n,) + a.shape), 0, 255).astype(np.uint8)

    fade = np.where(t < 60, 1 - np.clip((t - 50) / 10, 0, 1), np.clip((t - 60) / 10, 0, 1))
    black = np.clip(np.where(t < 60, a[None], b[None]) * fade + rng.integers(-1, 2, (n,) + a.shape), 0, 255)
    return {"still": blend(np.zeros_like(t)), "hard_cut": blend((t >= 60).astype(np.float32)),
            "dissolve_20": blend(np.clip((t - 50) / 20, 0, 1)), "dissolve_60": blend(np.clip((t - 30) / 60, 0, 1)),
            "fade_black": black.astype(np.uint8)}


def test_cheap_first_pass_misses_no_cut_transnet_finds(corpus, cuts):
    """The first pass (`quiet` windows skip TransNetV2) against TransNetV2 on every frame: every
    frame the full run puts above the cut threshold keeps exactly its probability."""
    from pipeline.config import CutsFilterConfig as C

    frames = np.stack(list(small_frames(hard_cut_video(corpus))))
    videos = transitions(frames[0].astype(np.float32), frames[-1].astype(np.float32), np.random.default_rng(0))
    d = C()
    full = StreamingTransNet(cuts.net.model)
    fast = StreamingTransNet(cuts.net.model, prefilter=(d.prefilter_step, d.prefilter_span_diff, d.prefilter_span))
    found = {}
    for name, video in videos.items():
        ref, got = full.probs(iter(video)), fast.probs(iter(video))
        hit = ref > THRESHOLD
        np.testing.assert_allclose(got[hit], ref[hit], atol=1e-6, err_msg=name)
        found[name] = int(hit.sum())
    assert found["hard_cut"] >= 1 and found["still"] == 0, found
    # measured: hard cut 1 frame, dissolve_20 2, fade_black 3, dissolve_60 0 (TransNetV2's single
    # frame head does not fire on a 60-frame dissolve either); windows run 9, skipped 6
    assert fast.windows_skipped >= 3  # the still video's three windows, at least, never reach TransNetV2


def test_reconcile_without_any_clip_rows(tmp_path):
    """A run where every video failed before the clip level has no key / shard columns at all."""
    from pipeline.curate import reconcile_shards

    videos = pd.DataFrame([dict(video_id="v", clip_index=None, status="error")])
    assert reconcile_shards(tmp_path, videos) == dict(shards_rewritten=0, clips_removed=0)
