"""Protocol and evaluation end to end (model.eval.protocol, model.eval.evaluate): two synthetic 360° clips with
straight lines in shards → perspective inputs along a simulated and a given trajectory with the
ground truth beside them → the evaluation command, on the ground truth itself, on degraded copies
and on the tiny model's generations. Everything is written under tmp_path."""
import json
import math

import numpy as np
import pytest
import yaml

from geometry import equirect_to_perspective
from model.data import PairConfig
from model.eval.evaluate import EvalConfig, evaluate, main as evaluate_main
from model.eval.lines import draw_great_circles, great_circle_normal
from model.poses import Poses
from model.eval.protocol import build_protocol, load_video_meta, main as protocol_main
from shards.video import decode_frames, encode_mp4, write_mp4
from shards.writer import ShardWriter

H, FPS, T = 96, 5.0, 4


def synthetic_clip(seed: int, num_frames: int = 6) -> np.ndarray:
    """(T, H, 2H, 3) uint8: blocky texture drifting slowly, with three bright great circles."""
    rng = np.random.default_rng(seed)
    base = (40 + 60 * rng.random((H // 8, H // 4, 3))).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    normals = [great_circle_normal((-40 + 10 * seed, 10), (40, -5)), great_circle_normal((-30, -20), (30, -12)),
               great_circle_normal((0, -40), (20 + 5 * seed, 30))]
    pano = draw_great_circles(base, normals, color=(235, 235, 235), thickness=2)
    return np.stack([np.roll(pano, t, axis=1) for t in range(num_frames)])


def protocol_config() -> PairConfig:
    traj = {"hfov_deg": 100.0, "vfov_deg": 80.0, "yaw_drift_deg_per_frame": [-2.0, 2.0]}
    return PairConfig(num_frames=T, fps=FPS, height=H, width=2 * H, context_prob=0.0, circular_shift=False,
                      trajectory=traj)


@pytest.fixture(scope="module")
def protocol_dir(tmp_path_factory):
    """Two clips in a shard, one simulated trajectory each plus one given poses file → 4 videos."""
    root = tmp_path_factory.mktemp("protocol")
    with ShardWriter(root / "shards", prefix="heldout") as writer:
        for i in range(2):
            frames = synthetic_clip(i)
            meta = dict(video_id=f"clip{i}", clip_index=0, source="synthetic", start_s=0.0,
                        end_s=len(frames) / FPS, fps=FPS, num_frames=len(frames), width=2 * H, height=H,
                        config_hash="test")
            writer.write(f"clip{i}_0000", encode_mp4(frames, FPS, crf=12), meta)
    poses = Poses((90.0, 70.0), yaw=[30.0, 33.0, 36.0, 39.0, 42.0], pitch=[-5.0, -4.0, -4.0, -3.0, -3.0],
                  roll=[2.0, 1.0, 0.0, -1.0, -2.0], fps=FPS)
    poses.save(root / "walk.json")
    config = root / "data.yaml"  # the test's trajectory: fixed FoV, so every view is large enough for Hough
    config.write_text(yaml.safe_dump({"data": protocol_config().to_dict()}))
    out = root / "proto"
    assert make_protocol(root, out) == 0
    return out


def make_protocol(root, out) -> int:
    """`model.eval.protocol` on the fixture's shards, poses file and config (written under root)."""
    return protocol_main(["--shards", str(root / "shards"), "--out", str(out), "--config", str(root / "data.yaml"),
                          "--poses", str(root / "walk.json"), "--annotate-lines", "6", "--seed", "3"])


def test_protocol_writes_inputs_ground_truth_and_poses(protocol_dir):
    listing = json.loads((protocol_dir / "protocol.json").read_text())
    names = sorted(v["name"] for v in listing["videos"])
    assert names == ["clip0_0000_real_walk", "clip0_0000_sim0", "clip1_0000_real_walk", "clip1_0000_sim0"]
    for name in names:
        meta = load_video_meta(protocol_dir / "gt" / f"{name}.json")
        poses = meta["poses"]
        assert len(poses) == T
        # aligned to the first frame: the first input frame looks at the canvas centre
        assert (poses.yaw[0], poses.pitch[0], poses.roll[0]) == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)
        gt = decode_frames(protocol_dir / "gt" / f"{name}.mp4")
        pers = decode_frames(protocol_dir / "input" / f"{name}.mp4")
        assert gt.shape == (T, H, 2 * H, 3) and pers.shape[1:3] == meta["input_hw"]
        # the input is what the ground truth shows along the (relative) poses
        rendered = equirect_to_perspective(gt, meta["fov_hv"], poses.yaw, poses.pitch, poses.roll,
                                           out_hw=meta["input_hw"])
        err = np.abs(rendered.astype(float) - pers.astype(float)).mean()
        assert err < 6.0, (name, err)
        assert json.loads((protocol_dir / "input" / f"{name}.json").read_text()) == meta["raw"]
    real = load_video_meta(protocol_dir / "gt" / "clip0_0000_real_walk.json")
    assert real["trajectory"] == "real" and real["fov_hv"] == pytest.approx((90.0, 70.0))
    # relative poses of the given trajectory: yaw steps of 3° survive the alignment
    assert np.diff(real["poses"].yaw) == pytest.approx([3.0, 3.0, 3.0], abs=0.3)
    lines = json.loads((protocol_dir / "gt" / "clip0_0000_sim0.lines.json").read_text())
    assert lines["frames"] and all(len(s) == 4 for f in lines["frames"].values() for s in f)


def test_protocol_is_the_same_bytes_when_made_again(protocol_dir, tmp_path):
    """The protocol is the reference every model is scored against: the same shards and seed give
    the same files (x264's assembly gave the same frames other bytes from one run to the next)."""
    again = tmp_path / "proto"
    assert make_protocol(protocol_dir.parent, again) == 0

    def listing(d):  # what the protocol writes (other tests add predictions beside it)
        return sorted(p.relative_to(d) for p in [d / "protocol.json", *(d / "input").iterdir(), *(d / "gt").iterdir()])

    made = listing(protocol_dir)
    assert made == listing(again)
    differ = [str(p) for p in made if (protocol_dir / p).read_bytes() != (again / p).read_bytes()]
    assert not differ, f"made again, these differ: {differ}"


def test_protocol_rejects_short_pose_files(tmp_path, protocol_dir):
    Poses((90.0,), [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]).save(tmp_path / "short.json")
    with pytest.raises(ValueError, match="short.json: 2 frames"):
        build_protocol([str(protocol_dir.parent / "shards")], tmp_path / "p", protocol_config(),
                       pose_files=[str(tmp_path / "short.json")])


def _copy_gt_as_prediction(protocol_dir, pred_dir, transform=None):
    pred_dir.mkdir(parents=True, exist_ok=True)
    for gt in sorted((protocol_dir / "gt").glob("*.mp4")):
        frames = decode_frames(gt)
        if transform is not None:
            frames = transform(gt.stem, frames)
        write_mp4(pred_dir / gt.name, frames, FPS, crf=12)


def test_ground_truth_as_prediction_scores_perfectly(protocol_dir, tmp_path):
    """Identical videos: PSNR ∞, LPIPS 0, motion as the gt's, line consistency high."""
    pred = tmp_path / "pred"
    pred.mkdir()
    for gt in (protocol_dir / "gt").glob("*.mp4"):
        (pred / gt.name).write_bytes(gt.read_bytes())  # bit-identical files
    report = evaluate(pred, protocol_dir, EvalConfig(lpips_random=True), method="oracle")
    s = report["summary"]
    for group in ("real", "simulated"):
        assert s[group]["videos"] == 2
        assert s[group]["psnr"] == math.inf
        assert s[group]["lpips"] == pytest.approx(0.0, abs=1e-7)
        assert 0.5 < s[group]["motion"] <= 1.0
        assert s[group]["fvd"] is None and s[group]["aesthetic"] is None
    assert s["line_videos"] >= 2 and s["line_consistency"] > 0.8
    assert s["line_consistency"] == pytest.approx(s["line_consistency_gt"])
    assert "fvd" in report["skipped"] and "imaging" in report["skipped"]
    md = report["markdown"]
    assert "| oracle | ∞ | 0.0000 | – |" in md and "Line cons.↑" in md


def test_psnr_counts_only_visible_directions(protocol_dir, tmp_path):
    """Black everywhere the input never looked: PSNR inside the union mask stays high; a prediction
    wrong inside the mask (the panorama upside down) scores far lower."""
    pred_outside = tmp_path / "outside"
    pred_inside = tmp_path / "inside"

    def blank_outside(name, frames):
        meta = load_video_meta(protocol_dir / "gt" / f"{name}.json")
        from model.eval.evaluate import visible_masks
        mask = visible_masks(meta, frames.shape[1:3], len(frames)).any(0)
        return np.where(mask[None, ..., None], frames, 0).astype(np.uint8)

    _copy_gt_as_prediction(protocol_dir, pred_outside, blank_outside)
    _copy_gt_as_prediction(protocol_dir, pred_inside, lambda name, f: np.flip(f, axis=1))  # upside down
    outside = evaluate(pred_outside, protocol_dir / "gt", EvalConfig(lpips_random=True))["videos"]
    inside = evaluate(pred_inside, protocol_dir / "gt", EvalConfig(lpips_random=True))["videos"]
    for a, b in zip(outside, inside):
        assert a["psnr"] > 30 and b["psnr"] < a["psnr"] - 10, (a, b)
        assert a["lpips"] < b["lpips"]
        assert 0 < a["visible_fraction"] < 1


def test_evaluate_cli_writes_json_and_markdown(protocol_dir, tmp_path, capsys):
    pred = tmp_path / "pred"
    _copy_gt_as_prediction(protocol_dir, pred)
    out = tmp_path / "report"
    assert evaluate_main(["--pred", str(pred), "--gt", str(protocol_dir / "gt"), "--out", str(out),
                          "--lpips-random", "--name", "copy", "--mask", "frame"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "copy" and report["settings"]["mask"] == "frame"
    assert {v["name"] for v in report["videos"]} == {p.stem for p in (protocol_dir / "gt").glob("*.mp4")}
    assert all(35 < v["psnr"] < 80 for v in report["videos"])  # re-encoded: close, not identical
    md = (out / "report.md").read_text()
    assert md.splitlines()[2].startswith("| Method | Real PSNR↑ | Real LPIPS↓ | Real FVD↓")
    assert "FVD not computed" in capsys.readouterr().out
    # a missing prediction is a clear error naming it
    (pred / "clip0_0000_sim0.mp4").unlink()
    assert evaluate_main(["--pred", str(pred), "--gt", str(protocol_dir), "--out", str(out), "--lpips-random"]) == 2
    assert "clip0_0000_sim0" in capsys.readouterr().err


def test_help_exits_cleanly():
    for cli in (evaluate_main, protocol_main):
        with pytest.raises(SystemExit) as e:
            cli(["--help"])
        assert e.value.code == 0


def test_tiny_model_generation_end_to_end(protocol_dir, tmp_path):
    """Protocol → `model.generate` with the tiny random SVD on every input → evaluation."""
    generate = pytest.importorskip("model.generate", reason="model.generate not available")
    from model.network import build_tiny_svd

    model_dir = build_tiny_svd(tmp_path / "tiny_svd", num_frames=T)
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    gt.mkdir()
    # one video per clip, one of each trajectory kind (generation is the slow part on 2 CPU cores)
    names = ["clip0_0000_sim0", "clip1_0000_real_walk"]
    for name in names:
        for suffix in (".mp4", ".json", ".lines.json"):
            if (protocol_dir / "gt" / f"{name}{suffix}").is_file():
                (gt / f"{name}{suffix}").write_bytes((protocol_dir / "gt" / f"{name}{suffix}").read_bytes())
    for name in names:
        rc = generate.main(["--model", str(model_dir), "--input", str(protocol_dir / "input" / f"{name}.mp4"),
                            "--poses", str(protocol_dir / "input" / f"{name}.json"), "--output", str(pred / name),
                            "--height", "16", "--window", str(T), "--context", "1", "--steps", "2",
                            "--fps", str(FPS), "--device", "cpu"])
        assert rc in (0, None)
    report = evaluate(pred, gt, EvalConfig(lpips_random=True), method="tiny")
    assert sorted(v["name"] for v in report["videos"]) == sorted(names)
    for v in report["videos"]:
        assert np.isfinite(v["psnr"]) and 0 < v["psnr"] < 40
        assert v["lpips"] > 0 and 0 <= v["motion"] <= 1
        assert any("resized" in n for n in v["notes"])  # generated at 16×32, ground truth 96×192
    assert report["summary"]["simulated"]["videos"] == 1 and report["summary"]["real"]["videos"] == 1
    assert "| tiny |" in report["markdown"]


def test_imaging_quality_column_with_local_musiq_weights(protocol_dir, tmp_path, capsys):
    """`--musiq PATH` (random MUSIQ weights in pyiqa's checkpoint format) fills the Imag. column;
    one video, one frame per view (`--musiq-frames 1`) to stay fast on a CPU."""
    musiq_arch = pytest.importorskip("pyiqa.archs.musiq_arch", reason="pyiqa not installed")
    import torch

    torch.manual_seed(0)
    weights = tmp_path / "musiq_random.pth"
    torch.save(musiq_arch.MUSIQ(pretrained=False).state_dict(), weights)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    name = "clip0_0000_sim0"
    for suffix in (".mp4", ".json"):
        (gt / f"{name}{suffix}").write_bytes((protocol_dir / "gt" / f"{name}{suffix}").read_bytes())
    (pred / f"{name}.mp4").write_bytes((protocol_dir / "gt" / f"{name}.mp4").read_bytes())
    out = tmp_path / "report"
    assert evaluate_main(["--pred", str(pred), "--gt", str(gt), "--out", str(out), "--lpips-random",
                          "--musiq", str(weights), "--musiq-frames", "1", "--view-size", "32", "--name", "m"]) == 0
    report = json.loads((out / "report.json").read_text())
    imaging = report["videos"][0]["imaging"]
    assert isinstance(imaging, float) and math.isfinite(imaging)
    assert report["summary"]["simulated"]["imaging"] == pytest.approx(imaging)
    assert "imaging" not in report["skipped"] and "1 evenly spaced frames" in report["skipped"]["imaging_note"]
    table_row = (out / "report.md").read_text().splitlines()[4].split(" | ")
    assert table_row[6 + 4] == f"{imaging:.4f}"  # Method, 6 real columns (–), Sim. PSNR, LPIPS, FVD, Imag.
    # a weights path that is not a file is a clear error, not a download
    assert evaluate_main(["--pred", str(pred), "--gt", str(gt), "--out", str(out), "--lpips-random",
                          "--musiq", str(tmp_path / "nope.pth")]) == 2
    assert "--musiq" in capsys.readouterr().err
