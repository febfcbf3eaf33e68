"""Video stabilisation with a panorama (paper §4.3): a perspective view whose orientation stays
fixed (or follows a smoothed path), rendered from a 360° video, so nothing is cropped — the full
field of view is kept because the panorama holds what the shaking camera did not see.

Two kinds of input:

1. A panorama made by `model.generate` with the `poses.json` it wrote (`--poses`). The panorama is
   already world-fixed (view-based alignment), and the poses say where the shaky input camera
   looked. The stabilised camera looks along the first pose (or a smoothed path, `--smooth`), with
   the input's FoV.
2. Any 360° video without poses (e.g. from a handheld 360° camera, whose equirect turns with the
   camera). Its own rotations R_k (relative to frame 0) are estimated from the equirect frames
   (`model.poses.estimate_equirect_rotations`), and each frame is viewed through their inverse:
   frame k shows the world direction d at R_kᵀ·d, so a camera that stays at S in the world is
   rendered at R_kᵀ·S.

In both cases frame k is rendered at P_kᵀ·S_k, with P_k the panorama's rotation (identity in
case 1) and S_k the stabilised camera: the first camera orientation C_0 (default), or the camera
path C_k smoothed by a Gaussian of `--smooth` seconds on quaternions (keeps intended pans).

CLI:  python -m model.stabilize --input pano.mp4 --output stable.mp4 [--poses poses.json]
          [--fov 90] [--view YAW,PITCH,ROLL] [--smooth 0] [--size 640x360] [--equirect-output FILE]
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Sequence

import numpy as np

from geometry import euler_from_matrix, rotate_equirect, rotation_matrix
from model.poses import WORK_SIZE, Poses, estimate_equirect_rotations, parse_angles, parse_fov
from model.render import parse_size, render_video


def smooth_rotations(R: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian-smoothed rotation path (T, 3, 3): quaternions made sign-continuous, filtered,
    renormalised. sigma_frames = 0 returns the path unchanged."""
    from scipy.ndimage import gaussian_filter1d
    from scipy.spatial.transform import Rotation

    if sigma_frames <= 0:
        return np.asarray(R, dtype=np.float64)
    q = Rotation.from_matrix(R).as_quat()
    for k in range(1, len(q)):  # q and −q are the same rotation: keep neighbours in one hemisphere
        if np.dot(q[k], q[k - 1]) < 0:
            q[k] = -q[k]
    q = gaussian_filter1d(q, sigma_frames, axis=0, mode="nearest")
    return Rotation.from_quat(q / np.linalg.norm(q, axis=1, keepdims=True)).as_matrix()


def stabilised_path(camera: np.ndarray, smooth_frames: float | None) -> np.ndarray:
    """S_k: the first camera orientation for every frame (None), or the smoothed path."""
    camera = np.asarray(camera, dtype=np.float64)
    if smooth_frames is None:
        return np.broadcast_to(camera[0], camera.shape).copy()
    return smooth_rotations(camera, smooth_frames)


def view_rotations(panorama: np.ndarray, stabilised: np.ndarray) -> np.ndarray:
    """Rotations to render each frame at: P_kᵀ·S_k (P_k: the panorama's own rotation)."""
    return np.swapaxes(panorama, -1, -2) @ stabilised


def angles_of(R: np.ndarray) -> dict[str, np.ndarray]:
    yaw, pitch, roll = euler_from_matrix(R)
    return {"yaw": np.asarray(yaw), "pitch": np.asarray(pitch), "roll": np.asarray(roll)}


def main(argv: Sequence[str] | None = None) -> int:
    from shards.video import (MAX_FRAME_PIXELS, MAX_VIDEO_PIXELS, check_frame_budget, check_video_budget,
                              decode_frames, fit_size, probe, write_mp4)

    parser = argparse.ArgumentParser(prog="python -m model.stabilize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="equirect (360°) video")
    parser.add_argument("--output", required=True, help="stabilised perspective mp4 to write")
    parser.add_argument("--poses", help="poses JSON of the input camera in this panorama (from model.generate); "
                                        "without it the panorama's own rotations are estimated")
    parser.add_argument("--fov", help="horizontal[,vertical] FoV of the output (default: the poses' FoV, else 90)")
    parser.add_argument("--view", default="0,0,0",
                        help="yaw,pitch,roll of the view relative to the 360° camera's front (no --poses only)")
    parser.add_argument("--smooth", type=float, default=None,
                        help="follow the camera path smoothed over this many seconds (default: fixed orientation)")
    parser.add_argument("--size", default=None, help="output WIDTHxHEIGHT (default: 640 wide, aspect of the FoV)")
    parser.add_argument("--equirect-output", help="also write the stabilised 360° video here")
    parser.add_argument("--crf", type=int, default=18)
    args = parser.parse_args(argv)
    try:
        info = probe(args.input)
        if info.width != 2 * info.height:
            raise ValueError(f"{args.input}: not an equirect video ({info.width}×{info.height}, expected 2:1)")
        check_frame_budget(info.width, info.height, MAX_FRAME_PIXELS, str(args.input))
        if args.equirect_output:  # rotated at full size, all frames held
            check_video_budget(info.num_frames, info.width, info.height, MAX_VIDEO_PIXELS, str(args.input))
        if args.smooth is not None and args.smooth <= 0:
            raise ValueError(f"--smooth: expected seconds > 0, got {args.smooth}")
        poses = Poses.load(args.poses) if args.poses else None
        if poses is not None:
            poses.check_frames(info.num_frames, args.poses)
        fov = parse_fov(args.fov) if args.fov else (poses.fov_deg if poses else (90.0,))
        if args.size:
            out_hw = parse_size(args.size)
        elif len(fov) == 2:
            h = 640 * math.tan(math.radians(fov[1]) / 2) / math.tan(math.radians(fov[0]) / 2)
            out_hw = (max(2, 2 * round(h / 2)), 640)
        else:
            out_hw = (360, 640)
        view = parse_angles(args.view, "--view", 3)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    T = info.num_frames
    if poses is not None:
        panorama = np.broadcast_to(np.eye(3), (T, 3, 3))
        camera = poses.matrices()
    else:
        # the estimator tracks at 2 × WORK_SIZE wide: decode straight to that size
        frames = decode_frames(args.input, size=fit_size(info.width, info.height, 2 * WORK_SIZE))
        panorama, _ = estimate_equirect_rotations(frames, name=args.input, progress=True)
        camera = panorama @ rotation_matrix(*view)
    sigma = None if args.smooth is None else args.smooth * info.fps
    R = view_rotations(panorama, stabilised_path(camera, sigma))
    angles = angles_of(R)
    # (T,) horizontal FoVs (vertical from the output's aspect) or (T, 2) (h, v) pairs
    fovs = np.tile(np.asarray(fov, dtype=np.float64), (T, 1)) if len(fov) == 2 else np.full(T, fov[0])
    frames = render_video(args.input, lambda idx: {**{a: v[idx] for a, v in angles.items()}, "fov": fovs[idx]},
                          T, out_hw, desc="stabilising")
    write_mp4(args.output, frames, info.fps, crf=args.crf)
    print(f"wrote {args.output}: {T} frames {out_hw[1]}×{out_hw[0]}, fov {fov[0]:g}°")
    if args.equirect_output:
        equi = decode_frames(args.input)
        # output(d) = input(R·d) with R = P_kᵀ·S_k·S_0ᵀ: the world stays put, S_0 at the centre's front
        Rs = R @ np.swapaxes(stabilised_path(camera, sigma)[:1], -1, -2)
        a = angles_of(Rs)
        write_mp4(args.equirect_output, rotate_equirect(equi, a["yaw"], a["pitch"], a["roll"]), info.fps, crf=args.crf)
        print(f"wrote {args.equirect_output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
