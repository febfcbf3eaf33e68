"""Stabilisation: a fixed-orientation (or smoothed) view through the inverse of the rotations."""
import numpy as np

from geometry import equirect_to_perspective, rotate_equirect, rotation_matrix
from model.poses import Poses, rotation_angle_deg
from model.stabilize import main, smooth_rotations, stabilised_path, view_rotations
from shards.video import decode_frames, write_mp4




def mean_step(frames: np.ndarray) -> float:
    """Mean absolute change between consecutive frames."""
    return float(np.abs(np.diff(frames.astype(np.float32), axis=0)).mean())


def test_smoothing_keeps_a_pan_and_removes_the_shake():
    k = np.arange(60.0)
    shake = np.sin(k * 2.1) * 2.0
    R = rotation_matrix(k * 1.0 + shake, shake, 0 * k)
    S = smooth_rotations(R, sigma_frames=4)
    yaw_err = rotation_angle_deg(np.swapaxes(S, -1, -2) @ rotation_matrix(k, 0 * k, 0 * k))
    assert np.median(yaw_err[10:-10]) < 0.5  # the smoothed path is the pan without the shake
    np.testing.assert_allclose(smooth_rotations(R, 0), R)
    fixed = stabilised_path(R, None)
    np.testing.assert_allclose(fixed, np.broadcast_to(R[0], R.shape))


def test_view_rotations_invert_the_panorama_rotation():
    P = rotation_matrix([0.0, 10, 20], [0.0, 5, -5], [0.0, 2, 4])
    S = np.broadcast_to(rotation_matrix(30, 0, 0), (3, 3, 3))
    V = view_rotations(P, S)
    np.testing.assert_allclose(P @ V, S, atol=1e-12)  # the panorama turned by P_k, then viewed at P_kᵀ·S: S


def test_handheld_360_video_is_stabilised_without_poses(tmp_path, make_texture):
    """A 360° camera that shakes: its equirect frames are the world rotated by R_k. The output must
    be the same fixed view of the world in every frame."""
    world = make_texture(256, 512)
    n = np.arange(8.0)
    yaw, pitch, roll = 4 * np.sin(n), 3 * np.cos(1.3 * n) - 3, 2 * np.sin(0.7 * n)
    shaky = rotate_equirect(np.repeat(world[None], len(n), 0), yaw, pitch, roll)  # frame(d) = world(R_k·d)
    write_mp4(tmp_path / "shaky.mp4", shaky, fps=5, crf=10)
    out = tmp_path / "stable.mp4"
    assert main(["--input", str(tmp_path / "shaky.mp4"), "--output", str(out), "--fov", "90",
                 "--size", "128x96", "--equirect-output", str(tmp_path / "stable360.mp4")]) == 0
    stable = decode_frames(out).astype(np.float32)
    reference = equirect_to_perspective(world, 90, 0.0, 0.0, 0.0, out_hw=(96, 128)).astype(np.float32)
    unstabilised = equirect_to_perspective(shaky, 90, 0.0, 0.0, 0.0, out_hw=(96, 128)).astype(np.float32)
    err_stable = np.abs(stable - reference).mean(axis=(1, 2, 3))
    err_shaky = np.abs(unstabilised - reference).mean(axis=(1, 2, 3))
    print(f"mean |frame − fixed view|: stabilised {err_stable.round(2)}, input {err_shaky.round(2)}")
    # frame 0 is not rotated: its error is the codec's (two H.264 encodings); the others add no more
    assert np.all(err_stable[1:] < err_stable[0] + 0.5)
    assert np.all(err_shaky[1:] > 3 * err_stable[0])
    assert mean_step(stable) < 0.25 * mean_step(unstabilised)
    stable360 = decode_frames(tmp_path / "stable360.mp4")
    assert stable360.shape == shaky.shape
    assert mean_step(stable360) < 0.3 * mean_step(shaky)


def test_generated_panorama_with_poses_keeps_the_full_fov(tmp_path, make_texture):
    """A world-fixed panorama (as model.generate writes) and shaky poses: a constant view at the
    first pose, with the poses' full FoV (the output aspect follows it)."""
    world = make_texture(128, 256)
    write_mp4(tmp_path / "pano.mp4", np.repeat(world[None], 6, 0), fps=5, crf=10)
    n = np.arange(6.0)
    Poses((80.0, 60.0), 10 + 3 * np.sin(n), 2 * np.cos(n), np.sin(n), fps=5.0).save(tmp_path / "poses.json")
    out = tmp_path / "stable.mp4"
    assert main(["--input", str(tmp_path / "pano.mp4"), "--output", str(out), "--poses",
                 str(tmp_path / "poses.json")]) == 0
    frames = decode_frames(out)
    h_expected = 640 * np.tan(np.radians(30)) / np.tan(np.radians(40))
    assert frames.shape[2] == 640 and abs(frames.shape[1] - h_expected) <= 2
    assert mean_step(frames) < 1.0  # every frame is the same view
    first = equirect_to_perspective(world, (80.0, 60.0), 10.0, 2.0, 0.0, out_hw=frames.shape[1:3])
    assert np.abs(frames[0].astype(np.float32) - first).mean() < 4.0


def test_poses_of_the_wrong_length_are_rejected_before_work(tmp_path, capsys):
    write_mp4(tmp_path / "pano.mp4", np.zeros((4, 32, 64, 3), np.uint8), fps=5)
    Poses(90.0, [0.0] * 3, [0.0] * 3, [0.0] * 3).save(tmp_path / "poses.json")
    assert main(["--input", str(tmp_path / "pano.mp4"), "--output", str(tmp_path / "s.mp4"),
                 "--poses", str(tmp_path / "poses.json")]) == 2
    assert "3 frames of poses but the input gives 4" in capsys.readouterr().err
    assert not (tmp_path / "s.mp4").exists()
