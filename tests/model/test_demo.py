"""model.demo (held-out shards, naive baseline, CLI errors) and model.fit_vae's CLI checks: fast parts."""

import numpy as np
import pytest

from model.demo import baseline_panorama, main as demo_main, pack_heldout
from model.fit_vae import main as fit_vae_main


def test_baseline_keeps_the_canvas_and_fills_the_rest_by_latitude():
    from model.generate import condition_canvas
    from model.poses import Poses

    rng = np.random.default_rng(0)
    pers = rng.integers(40, 255, (2, 12, 16, 3), dtype=np.uint8)
    poses = Poses((90.0, 70.0), np.zeros(2), np.zeros(2), np.zeros(2))
    row_mean = np.linspace(0, 255, 16)[:, None].repeat(3, axis=1)
    out = baseline_panorama(pers, poses, 16, row_mean)
    canvas, mask = condition_canvas(pers, poses, 16)
    assert out.shape == (2, 16, 32, 3) and mask.any() and not mask.all()
    np.testing.assert_array_equal(out[mask], canvas[mask])
    rows = np.broadcast_to(np.arange(16)[None, :, None], mask.shape)
    np.testing.assert_allclose(out[~mask][:, 0], row_mean[rows[~mask], 0], atol=1)


def test_heldout_packs_only_valid_videos(tmp_path):
    from shards.reader import iter_samples
    from shards.video import write_mp4

    frames = np.zeros((4, 16, 32, 3), np.uint8)
    for name in ("equirect_000.mp4", "black_000.mp4"):
        write_mp4(tmp_path / name, frames, 5.0)
    (tmp_path / "labels.csv").write_text("file,expected_verdict\nequirect_000.mp4,accepted\nblack_000.mp4,rejected\n")
    out = pack_heldout(tmp_path, tmp_path / "shards")
    assert [s.key for s in iter_samples(sorted(map(str, out.glob("*.tar"))))] == ["equirect_000_0000"]


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    assert demo_main(["heldout", "--corpus", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    assert "labels.csv" in capsys.readouterr().err
    assert fit_vae_main(["--config", "configs/train/demo.yaml", "--shards", str(tmp_path), "--out",
                         str(tmp_path / "svd"), "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
    for bad in (["--canvas-weight", "-1"], ["--canvas-weight", "inf"], ["--lr", "nan"]):
        assert fit_vae_main(["--config", "configs/train/demo.yaml", "--shards", str(tmp_path), "--out",
                             str(tmp_path / "svd"), *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and bad[0] in err and len(err.strip().splitlines()) == 1
    assert fit_vae_main(["--config", "configs/train/demo.yaml", "--shards", str(tmp_path / "none"), "--out",
                         str(tmp_path / "svd")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
