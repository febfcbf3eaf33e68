"""Camera poses of an input video: the poses JSON format and a rotation-only estimator (paper §3.3).

To place a perspective video in the equirect canvas, each frame needs a field of view and an
orientation. The paper estimates them with a SLAM system and takes "the Euler angles relative to
the first frame" (view-based frame alignment): the first frame looks at the canvas centre and the
others sit where the camera turned to, so the sky stays at the top and the road at the bottom.

Poses JSON (one file per video; angles in degrees, conventions of `geometry`: +yaw turns right,
+pitch tilts up, +roll turns the camera clockwise; R = R_yaw · R_pitch · R_roll):

    {
      "fov_deg": [90.0, 58.7],      # (horizontal, vertical); one number = horizontal, the
                                    #  vertical following from the video's aspect (square pixels)
      "yaw":   [0.0, 0.8, 1.7],     # one entry per frame used (after --fps / --frames sampling)
      "pitch": [0.0, 0.1, 0.1],
      "roll":  [0.0, 0.0, -0.2],
      "fps": 5.0,                   # optional: the frame rate the poses are sampled at
      "source": "estimated",        # optional: "estimated" or "given"
      "tracking": {...}             # optional: the estimator's per-pair diagnostics
    }

The estimator (`estimate_poses`) handles handheld video, where the camera mostly turns: features
are tracked between consecutive frames (OpenCV Shi–Tomasi corners + pyramidal Lucas–Kanade with a
forward–backward check), turned into unit rays with the intrinsics implied by the FoV, and the
rotation between the two ray sets is fitted by RANSAC over two-ray samples with the closed-form
Kabsch/Wahba solution, then refitted on the inliers. Rotations are chained from the first frame.
Translation is ignored, which is exact for a rotating camera and for distant scenes. A pair with
too few inlier tracks triggers a warning naming the frames (a frame with no texture or a cut).

The same solver estimates the rotation of a 360° video itself (`estimate_equirect_rotations`,
rays from longitude/latitude), which `model.stabilize` inverts.

CLI:  python -m model.poses estimate VIDEO --fov H[,V] --out poses.json [--fps F] [--frames N]
      python -m model.poses show poses.json
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from geometry import euler_from_matrix, lonlat_to_xyz, rotation_matrix

log = logging.getLogger("model.poses")

MIN_INLIERS = 20          # fewer inlier tracks between two frames than this → "weak tracking"
MIN_INLIER_RATIO = 0.5    # or fewer than this share of the tracks agree on one rotation
MAX_POSES_BYTES = 64 * 2**20  # a poses JSON of 100k frames is about 6 MB
WORK_SIZE = 640           # longest side the estimator tracks at (rays come from the FoV, not pixels)


class WeakTrackingWarning(UserWarning):
    """Rotation between some frames rests on few tracked features."""


# ------------------------------------------------------------------------------------- FoV
def parse_fov(text: str | float | Sequence[float], name: str = "--fov") -> tuple[float, ...]:
    """'90' → (90.0,), '90,60' → (90.0, 60.0); each in (0°, 180°)."""
    if isinstance(text, str):
        try:
            values = tuple(float(v) for v in text.replace(" ", "").split(",") if v != "")
        except ValueError:
            raise ValueError(f"{name}: expected H or H,V in degrees, got {text!r}") from None
    else:
        values = tuple(float(v) for v in np.atleast_1d(np.asarray(text, dtype=np.float64)))
    if len(values) not in (1, 2):
        raise ValueError(f"{name}: expected H or H,V in degrees, got {text!r}")
    for v in values:
        if not (math.isfinite(v) and 0.0 < v < 180.0):
            raise ValueError(f"{name}: a field of view must lie in (0°, 180°), got {text!r}")
    return values


def fov_pair(fov: Sequence[float] | float, image_hw: tuple[int, int]) -> tuple[float, float]:
    """(h, v) degrees: a lone horizontal FoV gets the vertical of square pixels at image_hw.

    tan(v/2) = tan(h/2) · H/W (both spans measured at the image edges, like `geometry`).
    """
    values = parse_fov(fov, "fov_deg")
    if len(values) == 2:
        return values
    h = math.radians(values[0])
    H, W = image_hw
    return values[0], math.degrees(2 * math.atan(math.tan(h / 2) * H / W))


def intrinsics(fov_hv: Sequence[float], image_hw: tuple[int, int]) -> np.ndarray:
    """OpenCV camera matrix K for a pinhole whose FoV spans the image edges (pixel centres at integers).

    fx = (W/2) / tan(h/2), cx = W/2 − ½ (so the ray of column j is ((j − cx)/fx, …, 1), the
    same ray `geometry.equirect_to_perspective` renders column j from).
    """
    h, v = (math.radians(a) for a in fov_hv)
    H, W = image_hw
    return np.array([[W / 2 / math.tan(h / 2), 0.0, W / 2 - 0.5],
                     [0.0, H / 2 / math.tan(v / 2), H / 2 - 0.5],
                     [0.0, 0.0, 1.0]])


def pixel_rays(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 2) pixel coordinates (x, y) → (N, 3) unit rays in camera axes (x right, y down, z forward)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    rays = np.stack([(p[:, 0] - K[0, 2]) / K[0, 0], (p[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(p))], -1)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def equirect_rays(points: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(N, 2) equirect pixel coordinates (x, y), pixel centres at integers → (N, 3) unit directions."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    H, W = image_hw
    lon = (p[:, 0] + 0.5) / W * 360.0 - 180.0
    lat = 90.0 - (p[:, 1] + 0.5) / H * 180.0
    return lonlat_to_xyz(lon, lat)


# ---------------------------------------------------------------------------- rotation fit
def kabsch(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Rotation Q minimising Σ w‖b − Q·a‖² (Wahba's problem, closed form via SVD).

    a, b: (..., N, 3) unit rays; returns (..., 3, 3) proper rotations (det = +1).
    """
    w = np.ones(a.shape[:-1]) if weights is None else np.asarray(weights, dtype=np.float64)
    M = np.einsum("...n,...ni,...nj->...ij", w, b, a)  # Σ w · b aᵀ
    U, _, Vt = np.linalg.svd(M)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.broadcast_to(np.eye(3), M.shape).copy()
    D[..., 2, 2] = np.where(d == 0, 1.0, d)
    return U @ D @ Vt


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in radians between unit vectors (..., 3)."""
    return np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0))


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Geodesic angle of rotation matrices (..., 3, 3) in degrees.

    θ = atan2(sin θ, cos θ) with cos θ = (tr R − 1)/2 and sin θ = ‖vee(R − Rᵀ)‖/2: accurate for
    small angles too, where arccos alone loses half the digits.
    """
    R = np.asarray(R, dtype=np.float64)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    vee = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    return np.degrees(np.arctan2(np.linalg.norm(vee, axis=-1) / 2.0, cos))


def ransac_rotation(a: np.ndarray, b: np.ndarray, threshold_rad: float, iterations: int = 256,
                    rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Robust rotation b ≈ Q·a: two-ray hypotheses (vectorised), best consensus, inlier refit.

    Returns (Q (3, 3), inlier mask (N,)). With fewer than 2 rays, the identity and no inliers.
    """
    n = len(a)
    if n < 2:
        return np.eye(3), np.zeros(n, dtype=bool)
    rng = rng or np.random.default_rng(0)
    pick = np.stack([rng.choice(n, 2, replace=False) for _ in range(iterations)])  # (I, 2)
    Q = kabsch(a[pick], b[pick])                                                   # (I, 3, 3)
    err = angle_between(np.einsum("kij,nj->kni", Q, a), b[None])                   # (I, N)
    votes = (err < threshold_rad).sum(1)
    inliers = err[int(np.argmax(votes))] < threshold_rad
    for _ in range(2):  # refit on the consensus set, then re-collect the inliers of the refit
        if inliers.sum() < 2:
            break
        Q_best = kabsch(a[inliers], b[inliers])
        inliers = angle_between(a @ Q_best.T, b) < threshold_rad
    if inliers.sum() < 2:
        return np.eye(3), inliers
    return kabsch(a[inliers], b[inliers]), inliers


# ------------------------------------------------------------------------------ tracking
def _gray(frame: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    g = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    if scale != 1.0:
        g = cv2.resize(g, (round(g.shape[1] * scale), round(g.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return g


def track_features(prev: np.ndarray, nxt: np.ndarray, max_corners: int = 500,
                   mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Corners of `prev` tracked into `nxt` (grey uint8): matched (N, 2) point arrays.

    Shi–Tomasi corners, pyramidal Lucas–Kanade, and a forward–backward check (< 0.5 px) that
    drops tracks that slid or were occluded.
    """
    import cv2

    p0 = cv2.goodFeaturesToTrack(prev, maxCorners=max_corners, qualityLevel=0.005, minDistance=7,
                                 blockSize=7, mask=mask)
    if p0 is None or len(p0) < 2:
        return np.zeros((0, 2)), np.zeros((0, 2))
    lk = dict(winSize=(21, 21), maxLevel=3,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, nxt, p0, None, **lk)
    p0r, st2, _ = cv2.calcOpticalFlowPyrLK(nxt, prev, p1, None, **lk)
    fb = np.linalg.norm((p0 - p0r).reshape(-1, 2), axis=1)
    h, w = prev.shape
    q = p1.reshape(-1, 2)
    inside = (q[:, 0] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] >= 0) & (q[:, 1] <= h - 1)
    good = (st1.reshape(-1) == 1) & (st2.reshape(-1) == 1) & (fb < 0.5) & inside
    return p0.reshape(-1, 2)[good].astype(np.float64), q[good].astype(np.float64)


def chain_rotations(relative: Sequence[np.ndarray], start: np.ndarray | None = None) -> np.ndarray:
    """Camera-to-world rotations from frame-to-frame ones: R_k = R_{k−1} · Q_kᵀ, R_0 = start.

    Q_k maps rays of frame k−1 to rays of frame k (b = Q·a): a world direction d = R_{k−1}·a =
    R_k·b gives Q_k = R_kᵀ·R_{k−1}. Returns (T, 3, 3) with T = len(relative) + 1.
    """
    R = [np.eye(3) if start is None else np.asarray(start, dtype=np.float64)]
    for Q in relative:
        R.append(R[-1] @ np.asarray(Q).T)
    return np.stack(R)


@dataclass
class TrackingReport:
    """Per consecutive pair (k−1, k): tracked features, inliers, rotation angle (degrees)."""

    tracks: list[int] = field(default_factory=list)
    inliers: list[int] = field(default_factory=list)
    step_deg: list[float] = field(default_factory=list)

    def weak_pairs(self) -> list[int]:
        """Indices k of the frames whose rotation from k−1 rests on weak tracking."""
        return [k + 1 for k, (t, i) in enumerate(zip(self.tracks, self.inliers))
                if i < MIN_INLIERS or i < MIN_INLIER_RATIO * max(t, 1)]

    def to_dict(self) -> dict:
        return {"tracks": self.tracks, "inliers": self.inliers,
                "step_deg": [round(s, 4) for s in self.step_deg], "weak_frames": self.weak_pairs()}


def estimate_rotations(frames: np.ndarray, to_rays: Callable[[np.ndarray, tuple[int, int]], np.ndarray],
                       threshold_rad: float, scale: float = 1.0, start: np.ndarray | None = None,
                       seed: int = 0, progress: bool = False) -> tuple[np.ndarray, TrackingReport]:
    """Camera-to-world rotations (T, 3, 3) of a video, chained from frame 0 (= `start`, default I).

    `to_rays(points, work_hw)` turns tracked pixel positions at the working size into unit rays.
    """
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    report = TrackingReport()
    relative = []
    prev = _gray(frames[0], scale)
    for k in tqdm(range(1, len(frames)), desc="tracking", unit="pair", disable=not progress):
        cur = _gray(frames[k], scale)
        p0, p1 = track_features(prev, cur)
        a, b = to_rays(p0, prev.shape), to_rays(p1, cur.shape)
        Q, inliers = ransac_rotation(a, b, threshold_rad, rng=rng)
        relative.append(Q)
        report.tracks.append(int(len(p0)))
        report.inliers.append(int(inliers.sum()))
        report.step_deg.append(float(rotation_angle_deg(Q)))
        prev = cur
    return chain_rotations(relative, start), report


def _warn_weak(report: TrackingReport, name: str) -> None:
    weak = report.weak_pairs()
    if weak:
        shown = ", ".join(str(k) for k in weak[:10]) + (" …" if len(weak) > 10 else "")
        warnings.warn(f"{name}: weak tracking into frame(s) {shown} (< {MIN_INLIERS} inlier features or "
                      f"< {MIN_INLIER_RATIO:.0%} agreeing): those rotations may be wrong — check the "
                      "video for cuts or textureless frames, or pass --poses", WeakTrackingWarning, stacklevel=3)


# ----------------------------------------------------------------------------------- poses
def read_poses_json(path: str | os.PathLike, missing: str = "no such poses file") -> dict:
    """The parsed JSON of a poses file; a clear error naming the file when absent or not JSON."""
    from shards.schema import loads_bounded

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {missing}")
    size = path.stat().st_size
    if size > MAX_POSES_BYTES:  # checked before reading: the file may be huge
        raise ValueError(f"{path}: {size} bytes, over the limit of {MAX_POSES_BYTES} bytes for a poses / lines JSON")
    return loads_bounded(path.read_bytes(), str(path), max_bytes=MAX_POSES_BYTES)


@dataclass
class Poses:
    """FoV (h, v) or (h,) and per-frame yaw/pitch/roll in degrees (see the module docstring)."""

    fov_deg: tuple[float, ...]
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    fps: float | None = None
    source: str = "given"
    tracking: dict | None = None

    def __post_init__(self):
        self.fov_deg = parse_fov(self.fov_deg, "fov_deg")
        arrays = {}
        for name in ("yaw", "pitch", "roll"):
            v = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if v.size == 0:
                raise ValueError(f"poses: {name} is empty (need one angle per frame)")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"poses: {name} holds NaN or inf")
            arrays[name] = v
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"poses: yaw, pitch and roll must have one entry per frame, got lengths {lengths}")
        self.yaw, self.pitch, self.roll = arrays["yaw"], arrays["pitch"], arrays["roll"]
        if self.fps is not None and not (self.fps > 0):
            raise ValueError(f"poses: fps must be > 0, got {self.fps}")

    def __len__(self) -> int:
        return len(self.yaw)

    def fov_pair(self, image_hw: tuple[int, int]) -> tuple[float, float]:
        return fov_pair(self.fov_deg, image_hw)

    def matrices(self) -> np.ndarray:
        """Camera-to-world rotations (T, 3, 3)."""
        return rotation_matrix(self.yaw, self.pitch, self.roll)

    @classmethod
    def from_matrices(cls, R: np.ndarray, fov_deg, **kw) -> "Poses":
        yaw, pitch, roll = euler_from_matrix(np.asarray(R))
        return cls(fov_deg, np.unwrap(yaw, period=360.0), pitch, np.unwrap(roll, period=360.0), **kw)

    def relative_to_first(self) -> "Poses":
        """View-based frame alignment (§3.3): rotations R_0ᵀ·R_k, so frame 0 looks at the canvas centre."""
        R = self.matrices()
        return Poses.from_matrices(R[0].T @ R, self.fov_deg, fps=self.fps, source=self.source,
                                   tracking=self.tracking)

    def take(self, indices: Sequence[int]) -> "Poses":
        idx = np.asarray(indices, dtype=np.int64)
        return Poses(self.fov_deg, self.yaw[idx], self.pitch[idx], self.roll[idx], self.fps, self.source, None)

    def check_frames(self, num_frames: int, name: str = "poses") -> None:
        if len(self) != num_frames:
            raise ValueError(f"{name}: has {len(self)} frames of poses but the input gives {num_frames} frames "
                             "(poses are per frame used, after --fps/--frames sampling)")

    def to_dict(self) -> dict:
        d = {"fov_deg": list(self.fov_deg),
             "yaw": [round(float(v), 6) for v in self.yaw],
             "pitch": [round(float(v), 6) for v in self.pitch],
             "roll": [round(float(v), 6) for v in self.roll],
             "source": self.source}
        if self.fps is not None:
            d["fps"] = float(self.fps)
        if self.tracking is not None:
            d["tracking"] = self.tracking
        return d

    @classmethod
    def from_dict(cls, d: dict, name: str = "poses") -> "Poses":
        if not isinstance(d, dict):
            raise ValueError(f"{name}: expected a JSON object with fov_deg, yaw, pitch, roll")
        missing = [k for k in ("fov_deg", "yaw", "pitch", "roll") if k not in d]
        if missing:
            raise ValueError(f"{name}: missing key(s) {missing} (format: see `python -m model.poses --help`)")
        try:
            return cls(d["fov_deg"], d["yaw"], d["pitch"], d["roll"], d.get("fps"),
                       d.get("source", "given"), d.get("tracking"))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: {e}") from None

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Poses":
        return cls.from_dict(read_poses_json(path), name=str(path))


def estimate_poses(frames: np.ndarray, fov_deg, fps: float | None = None, start_deg=(0.0, 0.0, 0.0),
                   threshold_px: float = 1.5, name: str = "video", progress: bool = False) -> Poses:
    """Rotation-only poses of a perspective video (T, H, W, 3) uint8 with a known FoV.

    Tracks at most WORK_SIZE pixels on the long side; `threshold_px` is the RANSAC inlier
    distance in working-size pixels. Poses are chained from `start_deg` = (yaw, pitch, roll) of
    frame 0 (default: the canvas centre, i.e. aligned to the first frame). Warns
    (WeakTrackingWarning) when some pair is tracked weakly.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{name}: frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    H, W = frames.shape[1:3]
    fov = fov_pair(fov_deg, (H, W))
    scale = min(1.0, WORK_SIZE / max(H, W))

    def to_rays(points, work_hw):
        return pixel_rays(points, intrinsics(fov, work_hw))

    work_w = round(W * scale)
    threshold = threshold_px / (work_w / 2 / math.tan(math.radians(fov[0]) / 2))
    start = rotation_matrix(*start_deg)
    R, report = estimate_rotations(frames, to_rays, threshold, scale, start, progress=progress)
    _warn_weak(report, name)
    return Poses.from_matrices(R, fov, fps=fps, source="estimated", tracking=report.to_dict())


def estimate_equirect_rotations(frames: np.ndarray, threshold_deg: float = 0.5, name: str = "video",
                                progress: bool = False) -> tuple[np.ndarray, TrackingReport]:
    """Rotations (T, 3, 3) of a 360° camera relative to frame 0, from its equirect frames.

    Frame k shows the world direction d at d_k = R_kᵀ·d; features are tracked in the equirect
    and turned into directions by longitude/latitude.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[2] != 2 * frames.shape[1]:
        raise ValueError(f"{name}: expected equirect frames (T, H, 2H, 3), got {frames.shape}")
    scale = min(1.0, 2 * WORK_SIZE / frames.shape[2])
    R, report = estimate_rotations(frames, equirect_rays, math.radians(threshold_deg), scale, progress=progress)
    _warn_weak(report, name)
    return R, report


# -------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    from shards.video import MAX_FRAME_PIXELS, MAX_VIDEO_PIXELS, decode_frames, fit_size, probe

    parser = argparse.ArgumentParser(prog="python -m model.poses", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="estimate per-frame rotations of a perspective video")
    est.add_argument("video")
    est.add_argument("--fov", required=True, help="horizontal[,vertical] field of view in degrees")
    est.add_argument("--out", required=True, help="poses JSON to write")
    est.add_argument("--fps", type=float, default=None, help="sample the video at this rate (default: native)")
    est.add_argument("--frames", type=int, default=None, help="use only the first N sampled frames")
    est.add_argument("--start", default="0,0,0", help="yaw,pitch,roll of the first frame (default 0,0,0)")
    est.add_argument("--max-frame-pixels", type=int, default=MAX_FRAME_PIXELS,
                     help=f"refuse a video whose frames are larger (default {MAX_FRAME_PIXELS})")
    est.add_argument("--max-video-pixels", type=int, default=MAX_VIDEO_PIXELS,
                     help=f"refuse to hold more decoded pixels than this (default {MAX_VIDEO_PIXELS}); "
                          "frames are decoded at most 2×640 on the long side")
    show = sub.add_parser("show", help="validate a poses JSON and print a summary")
    show.add_argument("poses")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "show":
            p = Poses.load(args.poses)
            print(f"{args.poses}: {len(p)} frames, fov {p.fov_deg}, source {p.source}")
            for k in ("yaw", "pitch", "roll"):
                v = getattr(p, k)
                print(f"  {k:5s} min {v.min():8.2f}  max {v.max():8.2f}  last {v[-1]:8.2f}")
            return 0
        fov = parse_fov(args.fov)
        start = parse_angles(args.start, "--start", 3)
        info = probe(args.video)
        # tracking works at WORK_SIZE: decode each frame straight to at most twice that, never at
        # the source size (a 4K phone video would otherwise hold ~25 MB per frame)
        frames = decode_frames(args.video, fps=args.fps, num_frames=args.frames,
                               size=fit_size(info.width, info.height, 2 * WORK_SIZE),
                               max_frame_pixels=args.max_frame_pixels, max_video_pixels=args.max_video_pixels)
        poses = estimate_poses(frames, fov, fps=args.fps or info.fps, start_deg=start, name=args.video,
                               progress=True)
        poses.save(args.out)
        print(f"wrote {args.out}: {len(poses)} frames, fov {tuple(round(f, 2) for f in poses.fov_deg)}")
        return 0
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def parse_angles(text: str, name: str, n: int) -> tuple[float, ...]:
    """'a,b,c' → n floats (angles, any range)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{name}: expected {n} comma-separated numbers, got {text!r}") from None
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name}: expected {n} comma-separated numbers, got {text!r}")
    return values


if __name__ == "__main__":
    sys.exit(main())
