"""Line consistency (supp. §3.4 "Line Consistency", Fig. 16): do straight lines of the input view
continue as straight lines in the generated views next to it?

For one annotated input frame:
1. the annotated lines of the input view are carried into a neighbouring view (the input camera
   turned by a fixed angle, rendered from the generated panorama) through the rotation-only
   homography H = K_nb · R_nbᵀ · R_in · K_in⁻¹ — the analytic continuation of each line;
2. lines are detected in that neighbouring view with the Hough transform (Canny + cv2.HoughLines);
3. continuations and detections are paired by maximum-weight bipartite matching on the EA-score;
4. the score is the EA-score of every continued line (0 when it found no partner), averaged.

EA-score (Zhao et al., "Deep Hough Transform for Semantic Line Detection", TPAMI 2021, §4.2,
eqs. for S_θ, S_d and S):

    S_θ = 1 − θ(l_i, l_j) / (π/2)        θ: the angle between the two lines, in [0, π/2]
    S_d = 1 − D(l_i, l_j)                D: distance of the two midpoints, the image normalised
                                            to the unit square (x / W, y / H); clamped at 0
    S   = (S_θ · S_d)²                   squared "to make it more sensitive when values are high"

Lines are infinite (Hough lines, great circles seen through a pinhole); each is represented by its
chord across the image, as in the DHT evaluation where every line spans the image, so midpoints
are those of the chords.

Conventions: pixel coordinates as OpenCV uses them (x = column index, y = row index, the centre of
pixel (0, 0) at (0, 0)); a segment is (x1, y1, x2, y2); a homogeneous line (a, b, c) holds the
points with a·x + b·y + c = 0. Cameras follow `geometry` (x right, y down, z forward,
camera-to-world R = rotation_matrix(yaw, pitch, roll)).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "fov_pair",
    "intrinsics",
    "segment_to_line",
    "line_to_chord",
    "rotation_homography",
    "transfer_lines",
    "ea_score",
    "ea_matrix",
    "match_lines",
    "detect_lines",
    "LineConsistencyConfig",
    "neighbour_cameras",
    "line_consistency",
    "great_circle_normal",
    "draw_great_circles",
]


# ------------------------------------------------------------------------------ cameras

def fov_pair(fov_deg, hw: tuple[int, int]) -> tuple[float, float]:
    """(horizontal, vertical) FoV in degrees; a scalar is horizontal, the vertical follows from hw."""
    fov = np.atleast_1d(np.asarray(fov_deg, np.float64))
    if fov.size == 2:
        return float(fov[0]), float(fov[1])
    if fov.size != 1 or not 0 < fov[0] < 180:
        raise ValueError(f"fov_deg: expected a scalar or (h, v) pair in (0, 180), got {fov_deg!r}")
    h, w = hw
    v = 2 * np.degrees(np.arctan(np.tan(np.radians(fov[0]) / 2) * h / w))
    return float(fov[0]), float(v)


def intrinsics(fov_deg, hw: tuple[int, int]) -> np.ndarray:
    """Pinhole K (3, 3) in OpenCV pixel-index coordinates.

    The image plane spans the FoV edge to edge (W pixels of width 1): f_x = (W/2)/tan(h/2),
    principal point at the image centre (W−1)/2, (H−1)/2 in index coordinates.
    """
    h_fov, v_fov = fov_pair(fov_deg, hw)
    height, width = hw
    fx = (width / 2) / np.tan(np.radians(h_fov) / 2)
    fy = (height / 2) / np.tan(np.radians(v_fov) / 2)
    return np.array([[fx, 0.0, (width - 1) / 2], [0.0, fy, (height - 1) / 2], [0.0, 0.0, 1.0]])


# ------------------------------------------------------------------------------- lines

def segment_to_line(segments) -> np.ndarray:
    """Segments (..., 4) → homogeneous lines (..., 3) through both endpoints (cross product)."""
    s = np.asarray(segments, np.float64)
    if s.shape[-1] != 4:
        raise ValueError(f"segments: expected (..., 4) as (x1, y1, x2, y2), got shape {s.shape}")
    ones = np.ones(s.shape[:-1] + (1,))
    return np.cross(np.concatenate([s[..., :2], ones], -1), np.concatenate([s[..., 2:], ones], -1))


def line_to_chord(line, hw: tuple[int, int]) -> np.ndarray | None:
    """The chord (x1, y1, x2, y2) of an infinite line across the image [0, W−1] × [0, H−1],
    or None when the line misses the image."""
    a, b, c = np.asarray(line, np.float64)
    height, width = hw
    x_max, y_max = width - 1.0, height - 1.0
    points = []
    if abs(b) > 1e-12:  # crossings with the left and right borders
        points += [(x, -(a * x + c) / b) for x in (0.0, x_max)]
    if abs(a) > 1e-12:  # crossings with the top and bottom borders
        points += [(-(b * y + c) / a, y) for y in (0.0, y_max)]
    eps = 1e-6 * max(hw)
    inside = np.array([(x, y) for x, y in points if -eps <= x <= x_max + eps and -eps <= y <= y_max + eps])
    if len(inside) < 2:
        return None
    # the two crossings farthest apart (a corner can appear twice)
    d = np.linalg.norm(inside[:, None] - inside[None], axis=-1)
    i, j = np.unravel_index(np.argmax(d), d.shape)
    if d[i, j] < eps:
        return None
    return np.concatenate([inside[i], inside[j]])


def rotation_homography(K_from: np.ndarray, R_from: np.ndarray, K_to: np.ndarray, R_to: np.ndarray) -> np.ndarray:
    """H = K_to · R_toᵀ · R_from · K_from⁻¹: pixels of one camera → pixels of another sharing its
    centre (R: camera-to-world). A pure rotation maps the world's straight lines (great circles)
    of one view onto straight lines of the other."""
    return K_to @ R_to.T @ R_from @ np.linalg.inv(K_from)


def transfer_lines(lines, H: np.ndarray) -> np.ndarray:
    """Homogeneous lines (..., 3) under the point homography H: l' = H⁻ᵀ · l."""
    return np.asarray(lines, np.float64) @ np.linalg.inv(H)  # (H⁻ᵀ l)ᵀ = lᵀ H⁻¹


# --------------------------------------------------------------------------- EA-score

def _angle_between(seg_a: np.ndarray, seg_b: np.ndarray) -> np.ndarray:
    """Unsigned angle between the directions of two lines, in [0, π/2] (radians)."""
    da = seg_a[..., 2:] - seg_a[..., :2]
    db = seg_b[..., 2:] - seg_b[..., :2]
    cos = np.abs((da * db).sum(-1)) / (np.linalg.norm(da, axis=-1) * np.linalg.norm(db, axis=-1))
    return np.arccos(np.clip(cos, 0.0, 1.0))


def ea_score(seg_a, seg_b, hw: tuple[int, int]) -> np.ndarray:
    """EA-score S = (S_θ · S_d)² ∈ [0, 1] of two segments (..., 4) in an image of size hw
    (Zhao et al. TPAMI 2021; see the module docstring). Broadcasts over leading axes."""
    a, b = np.asarray(seg_a, np.float64), np.asarray(seg_b, np.float64)
    height, width = hw
    s_theta = 1.0 - _angle_between(a, b) / (np.pi / 2)
    mid_a = 0.5 * (a[..., :2] + a[..., 2:])
    mid_b = 0.5 * (b[..., :2] + b[..., 2:])
    scale = np.array([width, height], np.float64)  # the image normalised to the unit square
    s_d = np.clip(1.0 - np.linalg.norm((mid_a - mid_b) / scale, axis=-1), 0.0, 1.0)
    return (s_theta * s_d) ** 2


def ea_matrix(gt_segments, det_segments, hw) -> np.ndarray:
    """EA-scores (G, D) between every ground-truth and every detected segment."""
    gt = np.asarray(gt_segments, np.float64).reshape(-1, 4)
    det = np.asarray(det_segments, np.float64).reshape(-1, 4)
    return ea_score(gt[:, None], det[None], hw)


def match_lines(gt_segments, det_segments, hw) -> np.ndarray:
    """Per ground-truth line, the EA-score of its partner in the maximum-weight bipartite matching
    (Hungarian algorithm, scipy); 0 for a line left without partner. Shape (G,)."""
    from scipy.optimize import linear_sum_assignment

    gt = np.asarray(gt_segments, np.float64).reshape(-1, 4)
    scores = np.zeros(len(gt))
    det = np.asarray(det_segments, np.float64).reshape(-1, 4)
    if len(gt) == 0 or len(det) == 0:
        return scores
    S = ea_matrix(gt, det, hw)
    rows, cols = linear_sum_assignment(S, maximize=True)
    scores[rows] = S[rows, cols]
    return scores


# ---------------------------------------------------------------------------- detection

def _as_equivalent(rho: float, theta: float, rho_ref: float, theta_ref: float,
                   rho_tol: float, theta_tol: float) -> tuple[float, float] | None:
    """(ρ, θ) rewritten in the form closest to (ρ_ref, θ_ref) — (ρ, θ) and (−ρ, θ ± π) are the
    same line — when it lies within the tolerances of it, else None."""
    for r, t in ((rho, theta), (-rho, theta - np.pi), (-rho, theta + np.pi)):
        if abs(r - rho_ref) <= rho_tol and abs(t - theta_ref) <= theta_tol:
            return r, t
    return None


def detect_lines(image: np.ndarray, max_lines: int = 16, min_votes_frac: float = 0.25,
                 canny: tuple[int, int] = (50, 150), rho_tol: float = 8.0,
                 theta_tol_deg: float = 4.0) -> np.ndarray:
    """Straight lines of an image by the Hough transform, strongest first, as chords (N, 4).

    Canny edges → cv2.HoughLines (1 px, 0.5°) with at least `min_votes_frac · min(H, W)` votes.
    Peaks within `rho_tol` px and `theta_tol_deg` of a stronger one are the same structure (the
    two edges of a painted stripe, neighbouring accumulator cells): they are merged into their
    vote-weighted mean, so a stripe gives one line along its middle.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    elif image.ndim == 2:
        gray = image.astype(np.uint8)
    else:
        raise ValueError(f"image: expected (H, W) or (H, W, 3), got shape {image.shape}")
    hw = gray.shape
    edges = cv2.Canny(cv2.GaussianBlur(gray, (3, 3), 0), *canny)
    threshold = max(int(min_votes_frac * min(hw)), 2)
    found = cv2.HoughLinesWithAccumulator(edges, 1, np.pi / 360, threshold)
    if found is None:
        return np.zeros((0, 4))
    found = found.reshape(-1, 3).astype(np.float64)
    found = found[np.argsort(-found[:, 2], kind="stable")]
    theta_tol = np.radians(theta_tol_deg)
    clusters: list[list[float]] = []  # [ρ of the peak, θ of the peak, Σ votes·ρ, Σ votes·θ, Σ votes]
    for rho, theta, votes in found:
        for c in clusters:
            same = _as_equivalent(rho, theta, c[0], c[1], rho_tol, theta_tol)
            if same is not None:
                c[2] += votes * same[0]
                c[3] += votes * same[1]
                c[4] += votes
                break
        else:
            if len(clusters) < max_lines:
                clusters.append([rho, theta, votes * rho, votes * theta, votes])
    chords = [line_to_chord((np.cos(t), np.sin(t), -r), hw)
              for r, t in ((c[2] / c[4], c[3] / c[4]) for c in clusters)]
    chords = [c for c in chords if c is not None]
    return np.array(chords).reshape(-1, 4)


# ----------------------------------------------------------------------- the metric

@dataclass
class LineConsistencyConfig:
    """How neighbouring views are chosen and lines detected (defaults documented in docs/evaluation.md)."""

    # neighbours as (Δyaw, Δpitch) in units of the input view's (h, v) FoV, turned in the input
    # camera's own frame: (±1, 0) = the views just right / left of the input view, edge to edge
    neighbours: tuple[tuple[float, float], ...] = ((1.0, 0.0), (-1.0, 0.0))
    # a continued line must cross at least this fraction of the view's smaller side to count
    min_chord_frac: float = 0.5
    max_lines: int = 16
    min_votes_frac: float = 0.25

    @classmethod
    def from_dict(cls, d: dict | None) -> "LineConsistencyConfig":
        d = dict(d or {})
        unknown = set(d) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"line consistency config: unknown keys {sorted(unknown)}")
        if "neighbours" in d:
            d["neighbours"] = tuple(tuple(map(float, n)) for n in d["neighbours"])
        return cls(**d)


def neighbour_cameras(yaw: float, pitch: float, roll: float, fov_hv: tuple[float, float],
                      config: LineConsistencyConfig) -> list[tuple[float, float, float]]:
    """(yaw, pitch, roll) of each neighbouring view: the input camera turned by (Δyaw, Δpitch)
    about its own axes, so "right" is the image's right even for a rolled camera."""
    from geometry import euler_from_matrix, rotation_matrix

    R_in = rotation_matrix(yaw, pitch, roll)
    cams = []
    for dy, dp in config.neighbours:
        R = R_in @ rotation_matrix(dy * fov_hv[0], dp * fov_hv[1], 0.0)
        cams.append(tuple(float(a) for a in euler_from_matrix(R)))
    return cams


def line_consistency(pano: np.ndarray, annotations: dict[int, np.ndarray], yaw, pitch, roll,
                     fov_deg, view_hw: tuple[int, int], config: LineConsistencyConfig | None = None,
                     return_details: bool = False):
    """Mean EA-score of the annotated input lines continued into neighbouring views of `pano`.

    pano: the generated equirect video (T, H, W, 3); annotations: {frame index: segments (N, 4)
    in input-view pixels}; yaw/pitch/roll: the input camera per frame (T,) in degrees; fov_deg:
    the input view's FoV ((h, v) or horizontal); view_hw: the input view's size (neighbours use
    the same size and FoV). Returns the mean score (NaN when no continued line is visible in any
    neighbour), and with `return_details` also one record per (frame, neighbour).
    """
    from geometry import equirect_to_perspective, rotation_matrix

    config = config or LineConsistencyConfig()
    fov_hv = fov_pair(fov_deg, view_hw)
    K = intrinsics(fov_hv, view_hw)
    yaw, pitch, roll = (np.broadcast_to(np.asarray(a, np.float64), (len(pano),)) for a in (yaw, pitch, roll))
    min_chord = config.min_chord_frac * min(view_hw)
    scores, details = [], []
    for t, segments in sorted(annotations.items()):
        t = int(t)
        if not 0 <= t < len(pano):
            raise ValueError(f"annotations: frame {t} outside the video's {len(pano)} frames")
        segments = np.asarray(segments, np.float64).reshape(-1, 4)
        if len(segments) == 0:
            continue
        lines_in = segment_to_line(segments)
        R_in = rotation_matrix(yaw[t], pitch[t], roll[t])
        for cam in neighbour_cameras(yaw[t], pitch[t], roll[t], fov_hv, config):
            H = rotation_homography(K, R_in, K, rotation_matrix(*cam))
            chords = [line_to_chord(l, view_hw) for l in transfer_lines(lines_in, H)]
            gt = np.array([c for c in chords if c is not None and np.hypot(*(c[2:] - c[:2])) >= min_chord])
            if len(gt) == 0:
                continue
            view = equirect_to_perspective(pano[t], fov_hv, yaw=cam[0], pitch=cam[1], roll=cam[2], out_hw=view_hw)
            det = detect_lines(view, config.max_lines, config.min_votes_frac)
            matched = match_lines(gt, det, view_hw)
            scores.extend(matched.tolist())
            details.append({"frame": t, "camera": cam, "continued": gt.tolist(), "detected": det.tolist(),
                             "scores": matched.tolist()})
    mean = float(np.mean(scores)) if scores else float("nan")
    return (mean, details) if return_details else mean


# ------------------------------------------------------------- synthetic line scenes

def great_circle_normal(lonlat_a, lonlat_b) -> np.ndarray:
    """Unit normal of the great circle through two directions given as (lon, lat) degrees: the
    world's straight line through them (every pinhole view shows it as a straight line)."""
    from geometry import lonlat_to_xyz

    n = np.cross(lonlat_to_xyz(*lonlat_a), lonlat_to_xyz(*lonlat_b))
    norm = np.linalg.norm(n)
    if norm < 1e-9:
        raise ValueError(f"great_circle_normal: {lonlat_a} and {lonlat_b} are the same or opposite directions")
    return n / norm


def draw_great_circles(equi: np.ndarray, normals, color=(255, 255, 255), thickness: int = 3) -> np.ndarray:
    """Copy of an equirect image (H, W, 3) uint8 with the great circles of the given unit normals
    (N, 3) drawn in: synthetic straight lines for testing detection and line consistency."""
    from geometry import xyz_to_lonlat

    out = np.array(equi, copy=True)
    height, width = out.shape[:2]
    for n in np.asarray(normals, np.float64).reshape(-1, 3):
        n = n / np.linalg.norm(n)
        u = np.cross(n, [0.0, 1.0, 0.0] if abs(n[1]) < 0.9 else [1.0, 0.0, 0.0])
        u /= np.linalg.norm(u)
        v = np.cross(n, u)
        phi = np.linspace(0, 2 * np.pi, 8 * width, endpoint=False)[:, None]
        lon, lat = xyz_to_lonlat(np.cos(phi) * u + np.sin(phi) * v)
        cols = ((lon + 180.0) / 360.0 * width - 0.5).round().astype(int)
        rows = ((90.0 - lat) / 180.0 * height - 0.5).round().astype(int)
        r = thickness // 2
        for dr in range(-r, thickness - r):
            for dc in range(-r, thickness - r):
                out[np.clip(rows + dr, 0, height - 1), (cols + dc) % width] = color
    return out
