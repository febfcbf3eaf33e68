"""Training pairs (model.data): geometry of the condition canvas, context mode, streaming split,
reproducibility, bad-sample handling and the preview CLI. Tiny procedural clips, all in tmp_path."""
import io
import itertools
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from model.data import (PairConfig, PairDataset, assign_shards, clip_frame_indices, load_frames, main, make_pair,
                        shuffle_buffer, solid_angle, view_aligned_condition)
from model.frames import OUTLINE_RGB, native_render_hw, signed_unit
from shards.video import encode_mp4, probe
from shards.writer import ShardWriter


# ------------------------------------------------------------------------------------- helpers
def sphere_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(T,H,W,3) uint8 equirect frames of a smooth function of the 3D direction: continuous across
    the seam and at the poles, so any misplacement shows as a large error, not as resampling blur."""
    rng = np.random.default_rng(seed)
    lon = np.radians((np.arange(width) + 0.5) / width * 360.0 - 180.0)
    lat = np.radians(90.0 - (np.arange(height) + 0.5) / height * 180.0)
    lon, lat = np.meshgrid(lon, lat)
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)
    frames = np.empty((num_frames, height, width, 3), np.float64)
    k1, k2 = rng.normal(size=(3, 3)) * 4.0, rng.normal(size=(3, 3)) * 3.0
    for t in range(num_frames):
        for c in range(3):
            frames[t, ..., c] = (0.5 + 0.22 * np.sin(xyz @ k1[c] + 0.4 * t + c)
                                 + 0.18 * np.cos(xyz @ k2[c] - 0.3 * t))
    return (frames.clip(0, 1) * 255).round().astype(np.uint8)


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 255) over the pixels where mask is true; a, b (…,H,W,3), mask (…,H,W)."""
    diff = a.astype(np.float64)[mask] - b.astype(np.float64)[mask]
    return float(10 * np.log10(255.0**2 / max(np.mean(diff**2), 1e-12)))


def sphere_fraction(mask: np.ndarray) -> float:
    """Fraction of the sphere's solid angle an equirect mask (H,W) covers (cos-latitude weights)."""
    h = mask.shape[0]
    cos_lat = np.cos(np.radians(90.0 - (np.arange(h) + 0.5) / h * 180.0))[:, None]
    return float((mask * cos_lat).sum() / (np.ones_like(mask) * cos_lat).sum())


def tiny_config(**changes) -> PairConfig:
    return PairConfig(num_frames=4, fps=None, height=32, width=64, pers_size=16, shuffle_buffer=3,
                      context_frames=2).replace(**changes)


def clip_meta(video_id: str, clip_index: int, frames: np.ndarray, fps: float) -> dict:
    t, h, w, _ = frames.shape
    return dict(video_id=video_id, clip_index=clip_index, source="procedural", start_s=0.0,
                end_s=t / fps, fps=fps, num_frames=t, width=w, height=h, config_hash="test")


def write_shards(out_dir, num_clips: int, per_shard: int, num_frames: int = 5, size=(32, 64),
                 bad: dict | None = None, video: str = "vid") -> list[str]:
    """Shards of tiny procedural clips; `bad` maps a clip index to broken mp4 bytes. Returns keys."""
    keys = []
    with ShardWriter(out_dir, prefix="test", max_samples=per_shard) as writer:
        for i in range(num_clips):
            frames = sphere_frames(num_frames, *size, seed=i)
            mp4 = encode_mp4(frames, fps=10)
            jpg = None
            if bad and i in bad:
                mp4, jpg = bad[i], b"\xff\xd8\xff\xd9"
            meta = clip_meta(f"{video}{i:03d}", 0, frames, 10)
            writer.write(f"{video}{i:03d}_0000", mp4, meta, jpg=jpg)
            keys.append(f"{video}{i:03d}_0000")
    return keys


# ------------------------------------------------------------------- geometry of the condition
POSES = [  # (yaw, pitch, roll, (h, v)): roll, pitch near ±60°, views across the seam
    (0.0, 0.0, 0.0, (90.0, 60.0)),
    (178.0, 5.0, 0.0, (100.0, 70.0)),     # straddles the ±180° seam
    (-175.0, -10.0, 25.0, (60.0, 90.0)),  # seam + roll
    (40.0, 60.0, -30.0, (80.0, 80.0)),    # pitch near +60° with roll
    (-120.0, -60.0, 45.0, (120.0, 50.0)),  # pitch near −60°, wide
    (90.0, 58.0, 180.0, (30.0, 30.0)),    # narrow, upside-down
    (170.0, -62.0, -60.0, (120.0, 120.0)),  # widest FoV over the seam, near the nadir
]


def test_condition_equals_target_inside_mask():
    frames = sphere_frames(len(POSES), 96, 192, seed=1)
    for t, (yaw, pitch, roll, fov) in enumerate(POSES):
        one = frames[t:t + 1]
        y, p, r = (np.array([a]) for a in (yaw, pitch, roll))
        _, condition, mask = view_aligned_condition(one, y, p, r, fov, native_render_hw(fov, (96, 192)))
        assert mask.sum() > 50, f"pose {POSES[t]}: empty mask"
        assert (condition[~mask] == 0).all(), "condition must be black outside the mask"
        psnr = masked_psnr(condition, one, mask)
        assert psnr >= 35.0, f"pose {POSES[t]}: PSNR inside the mask {psnr:.1f} dB < 35"
        # compared with the target 3 px (5.6°) off, the bound fails: the check sees misplacement
        assert masked_psnr(condition, np.roll(one, 3, axis=2), mask) < 35.0


def test_mask_area_matches_fov_solid_angle():
    H, W = 192, 384
    frames = np.zeros((1, H, W, 3), np.uint8)
    for yaw, pitch, roll, fov in POSES + [(10.0, 30.0, 10.0, (30.0, 120.0)), (-90.0, 0.0, 90.0, (120.0, 30.0))]:
        y, p, r = (np.array([a]) for a in (yaw, pitch, roll))
        _, _, mask = view_aligned_condition(frames, y, p, r, fov, native_render_hw(fov, (H, W)))
        expected = solid_angle(fov) / (4 * math.pi)
        got = sphere_fraction(mask[0])
        assert abs(got / expected - 1) < 0.02, f"fov {fov} at ({yaw}, {pitch}, {roll}): {got:.5f} vs {expected:.5f}"


def test_solid_angle_limits():
    assert solid_angle((180.0, 180.0)) == pytest.approx(2 * math.pi)  # a hemisphere
    assert solid_angle((1.0, 1.0)) == pytest.approx(math.radians(1.0) ** 2, rel=1e-4)  # small: h·v


def test_make_pair_contract_and_alignment():
    config = PairConfig(num_frames=6, fps=None, height=64, width=128, pers_size=24, context_prob=0.0)
    frames = sphere_frames(6, 64, 128, seed=2)
    pair = make_pair(frames, np.random.default_rng(0), config)
    T, H, W = 6, 64, 128
    # compact: uint8 pixels and a bool mask cross the DataLoader's process boundary, nothing unused
    assert pair["target"].shape == (T, 3, H, W) and pair["target"].dtype == torch.uint8
    assert pair["condition"].shape == (T, 3, H, W) and pair["condition"].dtype == torch.uint8
    assert pair["mask"].shape == (T, 1, H, W) and pair["mask"].dtype == torch.bool
    assert pair["pers"].shape == (T, 3, 24, 24) and pair["pers"].dtype == torch.uint8
    assert all(pair[k].shape == (T,) for k in ("yaw", "pitch", "roll")) and pair["fov"].shape == (2,)
    assert "weight" not in pair
    assert set(pair["mask"].unique().tolist()) == {False, True}
    assert (pair["condition"][~pair["mask"].expand(-1, 3, -1, -1)] == 0).all()  # black = −1 after signed_unit
    assert signed_unit(pair["condition"]).min() == -1.0
    assert pair["context"] is False and pair["context_frames"] == 0
    fov = pair["fov"].numpy()
    assert (fov >= 30.0 - 1e-6).all() and (fov <= 120.0 + 1e-6).all()
    # the target is the clip rolled by the drawn shift, in whole pixels
    shift_px = round(pair["shift"] / 360.0 * W)
    target = pair["target"].permute(0, 2, 3, 1).numpy()
    assert any(np.array_equal(target, np.roll(frames, s, axis=2)) for s in (shift_px, -shift_px))
    # inside the mask the condition is the (shifted) target it was cut from
    m = pair["mask"][:, 0].numpy()
    cond = pair["condition"].permute(0, 2, 3, 1).numpy()
    assert masked_psnr(cond, target, m) >= 35.0
    # and the mask covers the FoV's solid angle in every frame (2 % at this small size: 4 %)
    expected = solid_angle(fov) / (4 * math.pi)
    assert all(abs(sphere_fraction(m[t]) / expected - 1) < 0.04 for t in range(T))


def test_context_frames_fully_visible():
    frames = sphere_frames(6, 32, 64, seed=3)
    config = PairConfig(num_frames=6, fps=None, height=32, width=64, pers_size=16, context_frames=2,
                        context_prob=1.0)
    pair = make_pair(frames, np.random.default_rng(5), config)
    assert pair["context"] is True and pair["context_frames"] == 2
    assert pair["mask"][:2].all()
    assert torch.equal(pair["condition"][:2], pair["target"][:2])
    assert pair["mask"][2:].float().mean() < 1.0, "frames after the context stay masked"
    plain = make_pair(frames, np.random.default_rng(5), config.replace(context_prob=0.0))
    assert plain["context"] is False and plain["mask"][:2].float().mean() < 1.0


def test_context_probability_is_respected():
    frames = sphere_frames(4, 16, 32)
    config = PairConfig(num_frames=4, fps=None, height=16, width=32, pers_size=8, context_frames=2, context_prob=0.3)
    drawn = [make_pair(frames, np.random.default_rng(s), config)["context"] for s in range(60)]
    assert 0.1 < np.mean(drawn) < 0.5


def test_make_pair_rejects_wrong_frames():
    with pytest.raises(ValueError, match=r"frames must be \(4, 32, 64, 3\) uint8"):
        make_pair(np.zeros((4, 30, 64, 3), np.uint8), np.random.default_rng(0), tiny_config())


# ----------------------------------------------------------------------------- config, frames
def test_config_round_trip_and_errors(tmp_path):
    config = PairConfig(num_frames=8, height=64, width=128, context_prob=0.5)
    assert PairConfig.from_dict(config.to_dict()) == config
    path = tmp_path / "train.yaml"
    path.write_text("data:\n  num_frames: 9\n  height: 32\n  width: 64\n"
                    "  trajectory: {yaw_offset_deg: 0, hfov_deg: [60, 90]}\nlr: 1.0e-5\n")
    loaded = PairConfig.from_yaml(path)
    assert loaded.num_frames == 9 and loaded.trajectory.yaw_offset_deg == (0.0, 0.0)
    assert PairConfig.from_dict(loaded.to_dict()) == loaded
    frames = sphere_frames(9, 32, 64)
    pair = make_pair(frames, np.random.default_rng(0), loaded)
    assert 60.0 <= float(pair["fov"][0]) <= 90.0
    path.write_text("data:\n  num_frame: 9\n")
    with pytest.raises(ValueError, match=r"train.yaml: unknown data key\(s\) \['num_frame'\]"):
        PairConfig.from_yaml(path)
    with pytest.raises(ValueError, match="width must be 2 × height"):
        PairConfig(height=64, width=100)
    with pytest.raises(ValueError, match="context_frames"):
        PairConfig(num_frames=4, context_frames=5, context_prob=0.5)


def test_frame_indices_follow_fps_from_random_start():
    config = PairConfig(num_frames=5, fps=10.0)
    starts = set()
    for s in range(20):
        idx = clip_frame_indices(60, 30.0, config, np.random.default_rng(s))
        assert np.array_equal(np.diff(idx), [3, 3, 3, 3]) and idx[0] >= 0 and idx[-1] < 60
        starts.add(int(idx[0]))
    assert len(starts) > 5, "the start is random"
    assert clip_frame_indices(13, 30.0, config, np.random.default_rng(0)).tolist() == [0, 3, 6, 9, 12]
    with pytest.raises(ValueError, match="asked for 5 frames"):
        clip_frame_indices(12, 30.0, config, np.random.default_rng(0))


def test_load_frames_decodes_the_sampled_frames():
    t = np.arange(12)
    frames = np.repeat((t * 20 + 10).astype(np.uint8)[:, None, None, None], 3, axis=-1)
    frames = np.broadcast_to(frames, (12, 16, 32, 3)).copy()
    mp4 = encode_mp4(frames, fps=12, crf=0)
    config = PairConfig(num_frames=3, fps=4.0, height=8, width=16)
    rng = np.random.default_rng(1)
    idx = clip_frame_indices(12, 12.0, config, np.random.default_rng(1))
    got = load_frames(mp4, rng, config)
    assert got.shape == (3, 8, 16, 3)
    np.testing.assert_allclose(got.reshape(3, -1).mean(1), idx * 20 + 10, atol=3)


# ---------------------------------------------------------------------------------- streaming
def test_assign_shards_partitions_every_epoch():
    shards = [f"s{i}" for i in range(7)]
    for epoch in range(3):
        got = [assign_shards(shards, w, 4, seed=1, epoch=epoch) for w in range(4)]
        flat = [s for mine, mod, rem in got for s in mine]
        assert sorted(flat) == shards and all(mod == 1 for _, mod, _ in got)
    few = [assign_shards(shards[:2], w, 4, seed=1, epoch=0) for w in range(4)]
    assert {(mod, rem) for _, mod, rem in few} == {(4, 0), (4, 1), (4, 2), (4, 3)}


def test_shuffle_buffer_is_a_seeded_permutation():
    out = list(shuffle_buffer(range(50), 8, np.random.default_rng(0)))
    assert sorted(out) == list(range(50)) and out != list(range(50))
    assert out == list(shuffle_buffer(range(50), 8, np.random.default_rng(0)))
    assert list(shuffle_buffer(range(10), 1, np.random.default_rng(0))) == list(range(10))


def epoch_keys(urls, config, rank, world_size, num_workers, seed=0):
    dataset = PairDataset(urls, config, seed=seed, rank=rank, world_size=world_size, resample=False)
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers)
    return [pair["key"] for pair in loader]


@pytest.mark.parametrize("num_clips,per_shard", [(10, 2), (5, 3)])  # 5 shards ≥ 4 workers; 2 shards < 4
def test_two_ranks_two_workers_see_each_sample_once(tmp_path, num_clips, per_shard):
    keys = write_shards(tmp_path, num_clips, per_shard, num_frames=4, size=(16, 32))
    config = tiny_config(height=16, width=32, pers_size=8)
    seen = [k for rank in range(2) for k in epoch_keys(tmp_path, config, rank, 2, num_workers=2)]
    assert sorted(seen) == sorted(keys), "every sample of the epoch exactly once across 2 ranks × 2 workers"


def test_seed_reproduces_a_batch_and_pairs_do_not_depend_on_layout(tmp_path):
    write_shards(tmp_path, 4, 2, num_frames=5)
    config = tiny_config()

    def first_batch(seed):
        loader = DataLoader(PairDataset(tmp_path, config, seed=seed), batch_size=2)
        return next(iter(loader))

    a, b, c = first_batch(7), first_batch(7), first_batch(8)
    assert a["key"] == b["key"]
    for k in ("target", "condition", "mask", "pers", "yaw", "fov"):
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["yaw"], c["yaw"])
    # the pair of a key depends on (seed, epoch, key) only, not on ranks or workers
    single = {p["key"]: p for p in PairDataset(tmp_path, config, seed=7, resample=False)}
    split = {p["key"]: p for r in range(2) for p in PairDataset(tmp_path, config, seed=7, rank=r, world_size=2,
                                                                resample=False)}
    assert single.keys() == split.keys()
    assert all(torch.equal(single[k]["condition"], split[k]["condition"]) for k in single)


def test_resampling_is_endless_and_covers_each_epoch(tmp_path):
    keys = write_shards(tmp_path, 3, 2, num_frames=4)
    dataset = PairDataset(tmp_path, tiny_config(), seed=0, resample=True)
    stream = [p["key"] for p in itertools.islice(dataset, 9)]
    for e in range(3):
        assert sorted(stream[3 * e:3 * e + 3]) == sorted(keys)
    assert stream[:3] != stream[3:6] or stream[3:6] != stream[6:9], "epochs are reshuffled"


def test_bad_samples_are_skipped_and_counted(tmp_path):
    keys = write_shards(tmp_path, 5, 5, num_frames=5, bad={1: b"not an mp4 at all", 3: b"\x00" * 64})
    short = write_shards(tmp_path / "short", 1, 1, num_frames=2, video="short")  # shorter than num_frames=4
    (tmp_path / "orphan").mkdir()
    with tarfile.open(tmp_path / "orphan" / "test-000000.tar", "w") as tar:  # an mp4 without its json
        info = tarfile.TarInfo("orphan_0000.mp4")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"\x00\x00\x00\x00"))
    dataset = PairDataset([tmp_path, tmp_path / "short", tmp_path / "orphan"], tiny_config(shuffle_buffer=1),
                          seed=0, resample=False)
    pairs = list(dataset)
    assert sorted(p["key"] for p in pairs) == sorted(k for i, k in enumerate(keys) if i not in (1, 3))
    assert dataset.stats["skipped"] == 4 and dataset.stats["pairs"] == 3
    assert dataset.stats["skipped_reader"] == 1  # the orphan, rejected by shards.reader
    assert sum(p["skipped"] for p in pairs) <= 4  # skips after the last good pair are not carried
    assert short[0] not in {p["key"] for p in pairs}


def test_all_bad_resampling_raises_instead_of_spinning(tmp_path):
    write_shards(tmp_path, 1, 1, num_frames=2)  # too short for num_frames=4
    with pytest.raises(RuntimeError, match="no usable sample"):
        next(iter(PairDataset(tmp_path, tiny_config(), resample=True)))


# ------------------------------------------------------------------------------------- preview
def test_preview_cli_writes_png_and_video(tmp_path):
    import cv2

    write_shards(tmp_path / "shards", 2, 2, num_frames=5, size=(32, 64))
    out = tmp_path / "prev" / "pair.png"
    rc = main(["preview", "--shards", str(tmp_path / "shards"), "--out", str(out), "--video", "--rows", "3",
               "--context", "num_frames=4", "fps=null", "height=32", "width=64", "pers_size=16",
               "context_frames=1"])
    assert rc == 0
    image = cv2.imread(str(out))[..., ::-1]
    assert image.shape[1] > 2 * 64 and image.shape[0] >= 3 * 32
    outline = np.all(image == np.array(OUTLINE_RGB, np.uint8), axis=-1)
    assert outline.any(), "the condition panel shows the mask outline"
    assert outline[:, :64].sum() == 0, "no outline on the target panel"
    assert probe(out.with_suffix(".mp4")).num_frames == 4


def test_preview_index_out_of_range(tmp_path, capsys):
    write_shards(tmp_path, 1, 1, num_frames=5)
    assert main(["preview", "--shards", str(tmp_path), "--out", str(tmp_path / "x.png"), "--index", "3",
                 "num_frames=4", "fps=null", "height=32", "width=64"]) == 2
    assert "--index 3 out of range" in capsys.readouterr().err  # one line, exit 2, no traceback


def test_pairs_cross_the_loader_compactly_and_unpack_exactly():
    """The trainer's wire format: uint8 pixels and the mask as bits, restored exactly after a
    real worker process and collation."""
    from torch.utils.data import DataLoader, IterableDataset

    from model.data import pack_for_loader, unpack_batch

    frames = sphere_frames(4, 18, 36, seed=1)  # width 36: 4.5 bytes of bits, padded to 5
    config = PairConfig(num_frames=4, fps=None, height=18, width=36, pers_size=8, context_frames=1,
                        context_prob=1.0)
    pairs = [make_pair(frames, np.random.default_rng(i), config) for i in range(2)]

    class Stream(IterableDataset):
        def __iter__(self):
            return (pack_for_loader(p) for p in pairs)

    batch = next(iter(DataLoader(Stream(), batch_size=2, num_workers=1)))
    assert batch["mask_bits"].dtype == torch.uint8 and batch["mask_bits"].shape == (2, 4, 1, 18, 5)
    assert batch["target"].dtype == torch.uint8 and batch["target"].is_shared()
    out = unpack_batch(batch)
    assert "mask_bits" not in out
    assert torch.equal(out["mask"], torch.stack([p["mask"] for p in pairs]))


def test_colour_gain_scales_the_whole_pair_alike():
    frames = sphere_frames(4, 32, 64, seed=3)
    config = PairConfig(num_frames=4, height=32, width=64, pers_size=16, context_frames=0)
    plain = make_pair(frames, np.random.default_rng(5), config)
    gained = make_pair(frames, np.random.default_rng(5), config.replace(colour_gain=0.3))
    # the same shift, trajectory and mask (the gains are drawn last)
    assert torch.equal(plain["mask"], gained["mask"]) and plain["shift"] == gained["shift"]
    to01 = lambda x: x.float() / 255  # pairs are uint8
    gain = to01(gained["target"]).sum((0, 2, 3)) / to01(plain["target"]).sum((0, 2, 3))
    assert (gain - 1).abs().max() > 0.01 and ((gain > 0.69) & (gain < 1.31)).all(), gain
    inside = plain["mask"].expand_as(plain["condition"]) > 0
    expected = (to01(plain["condition"]) * gain.reshape(1, 3, 1, 1)).clamp(0, 1)
    assert (to01(gained["condition"]) - expected)[inside].abs().max() < 3 / 255
    assert (gained["condition"][~inside] == 0).all(), "the canvas stays black outside its mask"
    with pytest.raises(ValueError, match="colour_gain"):
        PairConfig(colour_gain=1.5)


def test_pairs_from_a_rethreshold_apply_shard_set(tmp_path):
    """`curate.py --rethreshold --apply` writes RUN_DIR/shards_<hash>/ (tars + decisions.parquet +
    config.yaml + apply.json): the trainer reads pairs of exactly the accepted clips from it.
    A hand-made run (shards + decisions) stands in for a curation run; tests/pipeline applies a real one."""
    import pandas as pd
    import yaml

    from pipeline.apply import apply_decisions
    from pipeline.config import CurateConfig

    run = tmp_path / "run"
    keys = write_shards(run / "shards", 5, per_shard=2, num_frames=4)
    status = ["accepted", "rejected", "accepted", "rejected", "accepted"]
    rows = [dict(video_id=k[:-5], clip_index=None, key=None, status="accepted") for k in keys]
    rows += [dict(video_id=k[:-5], clip_index=0, key=k, status=s) for k, s in zip(keys, status)]
    df = pd.DataFrame(rows)
    df["clip_index"] = df["clip_index"].astype("Int64")
    df.to_parquet(run / "decisions.parquet", index=False)
    local = Path(__file__).resolve().parents[2] / "configs" / "curate" / "local.yaml"
    cfg = CurateConfig.from_dict(yaml.safe_load(local.read_text()))
    summary = apply_decisions(run, cfg)
    out = run / f"shards_{cfg.config_hash()}"
    assert summary["kept"] == 3 and summary["dropped"] == 2 and sorted(p.name for p in out.iterdir()) == [
        "apply.json", "clips-000000.tar", "config.yaml", "decisions.parquet"]
    pairs = list(PairDataset(out, tiny_config(), seed=0, resample=False))
    assert sorted(p["key"] for p in pairs) == [k for k, s in zip(keys, status) if s == "accepted"]
    assert all(p["target"].shape[0] == 4 for p in pairs)
