"""Line consistency (model.eval.lines): EA-score on lines moved by known amounts, matching, the
rotation homography against `geometry`'s renderer, and Hough detection of lines drawn on the sphere."""
import math

import numpy as np
import pytest

from geometry import equirect_to_perspective, rotation_matrix
from model.eval.lines import (LineConsistencyConfig, detect_lines, draw_great_circles, ea_score, great_circle_normal,
                         intrinsics, line_consistency, line_to_chord, match_lines, neighbour_cameras,
                         rotation_homography, segment_to_line, transfer_lines)

HW = (120, 160)


def chord_through(point, angle_deg, hw=HW):
    """The chord across the image of the line through `point` at `angle_deg` from the x axis."""
    x, y = point
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return line_to_chord(segment_to_line([x, y, x + dx, y + dy]), hw)


def projected_great_circle(normal, yaw, pitch, roll, fov, hw):
    """The image line of a world great circle in a pinhole view: l = K⁻ᵀ · Rᵀ · n."""
    K = intrinsics(fov, hw)
    return np.linalg.inv(K).T @ rotation_matrix(yaw, pitch, roll).T @ normal


def scene(h=128, w=256, seed=0):
    """A dim textured equirect with three bright great circles crossing the front and the sides."""
    rng = np.random.default_rng(seed)
    base = (40 + 20 * rng.random((h // 8, w // 8, 3))).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    normals = np.stack([great_circle_normal((-40, 10), (40, -5)),      # two tilted "horizons"
                        great_circle_normal((-30, -20), (30, -12)),
                        great_circle_normal((0, -40), (20, 30))])      # a steep line in front
    return draw_great_circles(base, normals, thickness=3), normals


# ----------------------------------------------------------------------------------- EA-score
def test_ea_score_identical_lines_is_one():
    seg = chord_through((50.0, 40.0), 30.0)
    assert ea_score(seg, seg, HW) == pytest.approx(1.0)
    assert match_lines([seg], [seg], HW) == pytest.approx([1.0])


@pytest.mark.parametrize("shift_px", [3.0, 12.0, 30.0])
def test_ea_score_of_a_shifted_line(shift_px):
    """A horizontal line moved down by d pixels: S_θ = 1, S_d = 1 − d/H, S = (1 − d/H)²."""
    a = chord_through((0.0, 40.0), 0.0)
    b = chord_through((0.0, 40.0 + shift_px), 0.0)
    assert ea_score(a, b, HW) == pytest.approx((1 - shift_px / HW[0]) ** 2, rel=1e-9)


@pytest.mark.parametrize("angle_deg", [5.0, 20.0, 45.0, 90.0])
def test_ea_score_of_a_rotated_line(angle_deg):
    """Rotated about the image centre, both chords keep their midpoint at the centre: S = (1 − θ/(π/2))²."""
    centre = ((HW[1] - 1) / 2, (HW[0] - 1) / 2)
    a, b = chord_through(centre, 10.0), chord_through(centre, 10.0 + angle_deg)
    expected = (1 - math.radians(angle_deg) / (math.pi / 2)) ** 2
    assert ea_score(a, b, HW) == pytest.approx(expected, abs=1e-9)


def test_ea_score_is_symmetric_and_ignores_endpoint_order():
    a, b = chord_through((30.0, 20.0), 15.0), chord_through((90.0, 70.0), 50.0)
    assert ea_score(a, b, HW) == pytest.approx(ea_score(b, a, HW))
    assert ea_score(a, b, HW) == pytest.approx(ea_score(a[[2, 3, 0, 1]], b, HW))
    assert 0.0 <= ea_score(a, b, HW) < 1.0


def test_bipartite_matching_pairs_each_line_with_its_own_partner():
    gt = np.stack([chord_through((0.0, 20.0), 0.0), chord_through((80.0, 0.0), 90.0),
                   chord_through((80.0, 60.0), 45.0)])
    detected = gt[[2, 0, 1]] + np.array([0.0, 2.0, 0.0, 2.0])  # shuffled, each moved 2 px down
    scores = match_lines(gt, detected, HW)
    assert scores == pytest.approx(np.full(3, (1 - 2.0 / HW[0]) ** 2), rel=1e-6)
    # one detection for two lines: the better partner gets it, the other scores 0
    lone = match_lines(gt[:2], gt[1:2], HW)
    assert lone[1] == pytest.approx(1.0) and lone[0] == 0.0
    assert match_lines(gt, np.zeros((0, 4)), HW).tolist() == [0.0, 0.0, 0.0]


# ------------------------------------------------------------------------------- homography
def test_transfer_lines_keeps_points_on_their_line():
    K = intrinsics((90.0, 70.0), HW)
    H = rotation_homography(K, rotation_matrix(10, 5, 2), K, rotation_matrix(60, -3, 0))
    seg = np.array([20.0, 30.0, 140.0, 100.0])
    line_out = transfer_lines(segment_to_line(seg), H)
    for t in (0.0, 0.3, 1.0):
        p = np.append(seg[:2] + t * (seg[2:] - seg[:2]), 1.0)
        q = H @ p
        assert abs(line_out @ q) / (np.linalg.norm(line_out[:2]) * abs(q[2])) < 1e-9


def test_continuation_agrees_with_the_renderer():
    """A great circle seen in the input view, carried into the right neighbour by the homography,
    lands where `geometry` renders it there (the metric's camera model is the renderer's)."""
    pano, normals = scene()
    fov, hw = (80.0, 80.0), (96, 96)
    cam_in = (-30.0, 4.0, 3.0)
    (cam_nb,) = neighbour_cameras(*cam_in, fov, LineConsistencyConfig(neighbours=((1.0, 0.0),)))
    K = intrinsics(fov, hw)
    H = rotation_homography(K, rotation_matrix(*cam_in), K, rotation_matrix(*cam_nb))
    for n in normals:
        in_line = projected_great_circle(n, *cam_in, fov, hw)
        expected = projected_great_circle(n, *cam_nb, fov, hw)
        got = transfer_lines(in_line, H)
        assert np.cross(got / np.linalg.norm(got), expected / np.linalg.norm(expected)) == pytest.approx(np.zeros(3), abs=1e-9)
    # and the neighbour really is the input view turned right by one horizontal FoV
    R_rel = rotation_matrix(*cam_in).T @ rotation_matrix(*cam_nb)
    assert R_rel == pytest.approx(rotation_matrix(fov[0], 0.0, 0.0), abs=1e-9)


# -------------------------------------------------------------------------------- detection
@pytest.mark.parametrize("camera", [(0.0, 0.0, 0.0), (-40.0, 8.0, 5.0), (60.0, -5.0, -4.0)])
def test_hough_finds_lines_drawn_into_rendered_views(camera):
    pano, normals = scene()
    fov, hw = (90.0, 90.0), (96, 96)
    view = equirect_to_perspective(pano, fov, *camera, out_hw=hw)
    expected = [line_to_chord(projected_great_circle(n, *camera, fov, hw), hw) for n in normals]
    expected = np.array([c for c in expected if c is not None and np.hypot(*(c[2:] - c[:2])) > 48])
    assert len(expected) >= 2
    detected = detect_lines(view)
    scores = match_lines(expected, detected, hw)
    assert scores.min() > 0.9, (scores, detected)


def test_detect_lines_on_a_blank_image_finds_nothing():
    assert detect_lines(np.full((64, 64, 3), 90, np.uint8)).shape == (0, 4)


# ------------------------------------------------------------------------------- the metric
def _annotations(normals, yaw, pitch, roll, fov, hw, frames):
    return {t: np.array([line_to_chord(projected_great_circle(n, yaw[t], pitch[t], roll[t], fov, hw), hw)
                         for n in normals if line_to_chord(projected_great_circle(n, yaw[t], pitch[t], roll[t], fov, hw), hw) is not None])
            for t in frames}


def test_line_consistency_is_high_for_the_true_panorama_and_drops_when_lines_bend():
    pano, normals = scene()
    T = 3
    video = np.stack([pano] * T)
    yaw, pitch, roll = np.array([0.0, 4.0, 8.0]), np.array([0.0, 1.0, 2.0]), np.zeros(T)
    fov, hw = (60.0, 60.0), (80, 80)
    ann = _annotations(normals, yaw, pitch, roll, fov, hw, frames=(0, 2))
    good, details = line_consistency(video, ann, yaw, pitch, roll, fov, hw, return_details=True)
    assert good > 0.9 and len(details) >= 2
    # the same scene with the lines drawn elsewhere (the generator "bent" them): the lines are
    # still detected, but far from the continuation of the input's lines
    other = np.stack([great_circle_normal((-40, -8), (40, 14)),
                      great_circle_normal((-30, 25), (30, 2)),
                      great_circle_normal((40, -40), (60, 30))])
    base = (pano * 0 + 50).astype(np.uint8)
    bent = np.stack([draw_great_circles(base, other, thickness=3)] * T)
    assert line_consistency(bent, ann, yaw, pitch, roll, fov, hw) < good - 0.2
    # a panorama without any line: nothing detected, every continued line scores 0
    assert line_consistency(np.full_like(video, 50), ann, yaw, pitch, roll, fov, hw) == 0.0


def test_line_consistency_rejects_frames_outside_the_video():
    with pytest.raises(ValueError, match="frame 5"):
        line_consistency(np.zeros((2, 32, 64, 3), np.uint8), {5: np.zeros((1, 4))}, 0.0, 0.0, 0.0, 60.0, (16, 16))
