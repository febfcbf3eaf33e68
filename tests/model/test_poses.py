"""Poses JSON and the rotation-only estimator (model.poses).

Accuracy is measured on perspective videos rendered from a textured panorama along known
trajectories (pan, tilt, roll, handheld shake; FoV 60°–100°): the estimate, chained from frame 0,
is compared with the true rotation relative to frame 0 by the geodesic angle.
"""
import json
import math
import warnings

import cv2
import numpy as np
import pytest

from geometry import equirect_to_perspective, rotate_equirect, rotation_matrix
from model.poses import (Poses, WeakTrackingWarning, chain_rotations, estimate_equirect_rotations, estimate_poses,
                         fov_pair, intrinsics, kabsch, main, parse_fov, pixel_rays, ransac_rotation,
                         rotation_angle_deg)
from shards.video import write_mp4


@pytest.fixture(scope="module")
def world(make_texture):
    return make_texture(512, 1024, fine=True)  # corners to track everywhere


def relative_errors(poses: Poses, yaw, pitch, roll) -> np.ndarray:
    """Geodesic error (degrees) per frame between the estimate and the truth relative to frame 0."""
    truth = rotation_matrix(yaw, pitch, roll)
    truth = truth[0].T @ truth
    return rotation_angle_deg(np.swapaxes(poses.matrices(), -1, -2) @ truth)


k = np.arange(16, dtype=np.float64)
TRAJECTORIES = {
    "pan_fov60": (k * 3.0, 5 + 0 * k, 0 * k, 60.0),
    "tilt_fov80": (10 + 0 * k, k * 2.0 - 10, 0 * k, 80.0),
    "roll_fov100": (30 + 0 * k, 0 * k, k * 2.5, 100.0),
    "handheld_fov90": (2 * np.sin(k / 3) + k * 1.5, 3 * np.cos(k / 2) - 3, 2 * np.sin(k / 4), 90.0),
}


@pytest.mark.parametrize("name", list(TRAJECTORIES))
def test_estimated_rotations_match_known_trajectories(world, name):
    yaw, pitch, roll, fov = TRAJECTORIES[name]
    pers = equirect_to_perspective(world, fov, yaw, pitch, roll, out_hw=(144, 192))
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeakTrackingWarning)  # a textured scene must track well
        poses = estimate_poses(pers, fov)
    err = relative_errors(poses, yaw, pitch, roll)
    print(f"{name}: median rotation error {np.median(err[1:]):.3f}°, max {err.max():.3f}°")
    assert np.median(err[1:]) <= 1.0
    assert err.max() <= 2.0
    # frame 0 is the canvas centre (view-based alignment) and the angles are continuous
    assert poses.yaw[0] == pytest.approx(0, abs=1e-9) and poses.pitch[0] == pytest.approx(0, abs=1e-9)
    assert np.all(np.abs(np.diff(poses.yaw)) < 10)


def test_pan_direction_follows_the_geometry_convention(world):
    """A camera turning right gives increasing yaw; tilting up gives increasing pitch."""
    n = np.arange(6.0)
    pan = estimate_poses(equirect_to_perspective(world, 90, n * 4, 0 * n, 0 * n, out_hw=(96, 128)), 90)
    tilt = estimate_poses(equirect_to_perspective(world, 90, 0 * n, n * 4, 0 * n, out_hw=(96, 128)), 90)
    assert pan.yaw[-1] == pytest.approx(20, abs=0.5) and abs(pan.pitch[-1]) < 0.5
    assert tilt.pitch[-1] == pytest.approx(20, abs=0.5) and abs(tilt.yaw[-1]) < 0.5


def test_textureless_video_warns_of_weak_tracking():
    flat = np.full((4, 48, 64, 3), 128, np.uint8)
    with pytest.warns(WeakTrackingWarning, match="weak tracking into frame"):
        poses = estimate_poses(flat, 90, name="flat.mp4")
    assert poses.tracking["weak_frames"] == [1, 2, 3]
    np.testing.assert_allclose(poses.matrices(), np.broadcast_to(np.eye(3), (4, 3, 3)), atol=1e-9)


def test_equirect_rotations_of_a_turning_360_camera(world):
    n = np.arange(6.0)
    yaw, pitch, roll = n * 5, np.sin(n) * 3, n * 1.5
    small = cv2.resize(world, (512, 256), interpolation=cv2.INTER_AREA)
    frames = rotate_equirect(np.repeat(small[None], len(n), 0), yaw, pitch, roll)  # frame(d) = world(R_k·d)
    R, report = estimate_equirect_rotations(frames)
    truth = rotation_matrix(yaw, pitch, roll)
    err = rotation_angle_deg(np.swapaxes(R, -1, -2) @ (truth[0].T @ truth))
    assert np.median(err[1:]) < 0.5, err
    assert min(report.inliers) >= 20


# ----------------------------------------------------------------------------- the solver
def test_kabsch_and_ransac_recover_a_rotation_despite_outliers():
    rng = np.random.default_rng(1)
    Q = rotation_matrix(12.0, -7.0, 4.0)
    a = rng.normal(size=(200, 3))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = a @ Q.T
    assert rotation_angle_deg(kabsch(a, b).T @ Q) < 1e-6
    b_noisy = b.copy()
    bad = rng.random(200) < 0.3
    b_noisy[bad] = rng.normal(size=(bad.sum(), 3))
    b_noisy /= np.linalg.norm(b_noisy, axis=1, keepdims=True)
    Q_hat, inliers = ransac_rotation(a, b_noisy, math.radians(0.1))
    assert rotation_angle_deg(Q_hat.T @ Q) < 1e-6
    assert np.array_equal(inliers, ~bad)


def test_chain_rotations_composes_relative_steps():
    R_true = rotation_matrix([0.0, 10, 25, 30], [0.0, 5, -5, 2], [0.0, 1, 2, 3])
    relative = [R_true[k].T @ R_true[k - 1] for k in range(1, 4)]  # b = Q·a between frames
    np.testing.assert_allclose(chain_rotations(relative), R_true, atol=1e-12)


def test_pixel_rays_are_the_rays_geometry_renders():
    """The ray of column j is ((j + ½)/w·2 − 1)·tan(h/2) (geometry's pinhole spans the image edges)."""
    K = intrinsics((90.0, 60.0), (60, 80))
    rays = pixel_rays(np.array([[0.0, 0.0], [39.5, 29.5], [79.0, 59.0]]), K)
    x = (0.5 / 80 * 2 - 1) * math.tan(math.radians(45))
    y = (0.5 / 60 * 2 - 1) * math.tan(math.radians(30))
    np.testing.assert_allclose(rays[0], np.array([x, y, 1.0]) / math.sqrt(x * x + y * y + 1))
    np.testing.assert_allclose(rays[1], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(rays[2], rays[0] * [-1, -1, 1])


# ------------------------------------------------------------------------------ the format
def test_parse_fov_accepts_h_or_hv_and_rejects_out_of_range():
    assert parse_fov("90") == (90.0,)
    assert parse_fov("90,60") == (90.0, 60.0)
    for bad in ("0", "180", "-5", "90,200", "abc", "90,60,30", ""):
        with pytest.raises(ValueError, match="--fov"):
            parse_fov(bad)
    v = fov_pair(90.0, (90, 160))[1]
    assert math.tan(math.radians(v) / 2) == pytest.approx(90 / 160)


def test_poses_json_round_trip_and_relative_alignment(tmp_path):
    p = Poses((80.0, 50.0), [30.0, 40.0, 50.0], [10.0, 12.0, 14.0], [0.0, 1.0, 2.0], fps=5.0)
    path = p.save(tmp_path / "poses.json")
    q = Poses.load(path)
    np.testing.assert_allclose(q.matrices(), p.matrices(), atol=1e-9)
    assert q.fov_deg == (80.0, 50.0) and q.fps == 5.0
    rel = p.relative_to_first()
    np.testing.assert_allclose(rel.matrices()[0], np.eye(3), atol=1e-9)
    R = p.matrices()
    np.testing.assert_allclose(rel.matrices()[2], R[0].T @ R[2], atol=1e-9)


@pytest.mark.parametrize("content, message", [
    ({"fov_deg": 90, "yaw": [0, 1], "pitch": [0, 1]}, "missing key"),
    ({"fov_deg": 90, "yaw": [0, 1], "pitch": [0], "roll": [0, 1]}, "one entry per frame"),
    ({"fov_deg": 190, "yaw": [0], "pitch": [0], "roll": [0]}, r"\(0°, 180°\)"),
    ({"fov_deg": [90, 0], "yaw": [0], "pitch": [0], "roll": [0]}, r"\(0°, 180°\)"),
    ({"fov_deg": 90, "yaw": [], "pitch": [], "roll": []}, "empty"),
])
def test_bad_poses_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message) as e:
        Poses.load(path)
    assert "bad.json" in str(e.value)


def test_frame_count_mismatch_is_reported():
    p = Poses(90.0, [0.0] * 3, [0.0] * 3, [0.0] * 3)
    with pytest.raises(ValueError, match="3 frames of poses but the input gives 5"):
        p.check_frames(5, "poses.json")


def test_cli_estimate_writes_poses_from_a_video(world, tmp_path, capsys):
    n = np.arange(8.0)
    yaw, pitch, roll = n * 2.0, n * 0.5, 0 * n
    write_mp4(tmp_path / "pers.mp4", equirect_to_perspective(world, 70, yaw, pitch, roll, out_hw=(144, 192)), 5,
              crf=12)
    assert main(["estimate", str(tmp_path / "pers.mp4"), "--fov", "70", "--out", str(tmp_path / "p.json")]) == 0
    poses = Poses.load(tmp_path / "p.json")
    assert len(poses) == 8 and poses.source == "estimated" and poses.fps == 5.0
    assert np.median(relative_errors(poses, yaw, pitch, roll)[1:]) < 1.0
    assert main(["estimate", str(tmp_path / "pers.mp4"), "--fov", "0", "--out", str(tmp_path / "q.json")]) == 2
    assert "(0°, 180°)" in capsys.readouterr().err
    assert not (tmp_path / "q.json").exists()
