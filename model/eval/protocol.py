"""The evaluation protocol (paper §4 "Data", supp. §3.4): from held-out 360° clips, perspective
input videos along camera trajectories, each with its ground-truth panorama kept beside it.

Two kinds of trajectories, the two halves of the paper's Table 1:
- simulated: drawn with the camera motion simulation of paper eq. 3 (`geometry.simulate_trajectory`,
  the same ranges as training: the `trajectory` section of the data config);
- real: given as poses files (`model.poses` format, e.g. extracted from in-the-wild videos by
  `python -m model.poses estimate`), replayed on every held-out clip.

For one (clip, trajectory):
1. T frames of the clip at the data config's fps and equirect size (`model.data.load_frames`,
   from a start drawn from a seed tied to the clip key, so protocols are reproducible).
2. The perspective input rendered from the clip along the trajectory at the panorama's own pixel
   density (`model.frames.native_render_hw`, sizes rounded up to even for H.264).
3. Alignment to the first frame (default): the generator places the first input frame at the
   canvas centre (view-based frame alignment, §3.3), so the ground truth is the clip rotated by
   the first pose (`geometry.rotate_equirect`, one bilinear resampling) and the poses become
   R_0ᵀ·R_k (`model.poses.Poses.relative_to_first`). `--no-align` keeps the clip and the absolute
   poses (exact, no resampling; the input then starts wherever the trajectory does).
4. Optional line annotations (`--annotate-lines N`): up to N Hough lines of the input view at the
   first and middle frames (`model.eval.lines.detect_lines`), an automatic stand-in for the paper's
   manual annotation of videos with prominent lines (lanes, sidewalks); a hand-made file in the
   same format can replace it.

Layout written (docs/evaluation.md):

    OUT/protocol.json            settings and the list of videos
    OUT/input/NAME.mp4           perspective input video (T frames at fps)
    OUT/input/NAME.json          its poses (model.poses JSON + input width/height, trajectory kind)
    OUT/gt/NAME.mp4              ground-truth equirect video, in the frame of the poses
    OUT/gt/NAME.json             the same poses (so --gt OUT/gt is self-contained)
    OUT/gt/NAME.lines.json       annotated input-view lines (optional)

NAME = {clip key}_sim{j} or {clip key}_real_{poses file stem}.

    python -m model.eval.protocol --shards HELD_OUT_SHARDS --out DIR [--config train.yaml]
        [--simulated N] [--poses a.json b.json …] [--limit K] [--annotate-lines N] [--seed S]
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

log = logging.getLogger("model.eval.protocol")

__all__ = ["ProtocolVideo", "render_input", "align_to_first", "protocol_videos", "build_protocol",
           "annotate_lines", "load_video_meta", "main"]

GT_CRF = 12      # ground truth and input are stored nearly losslessly: they are the reference
INPUT_CRF = 14
# and bit-exact (shards.video): the same shards and seed give the same files on any machine and in
# any run, so two teams (or two runs) scoring against "the same protocol" score against the same bytes


@dataclass
class ProtocolVideo:
    """One evaluation video in memory: the input, its poses and the ground-truth panorama."""

    name: str
    trajectory: str                 # "simulated" or "real"
    source_key: str
    pers: np.ndarray                # (T, h, w, 3) uint8 perspective input
    gt: np.ndarray                  # (T, H, W, 3) uint8 equirect ground truth, in the poses' frame
    yaw: np.ndarray                 # (T,) degrees
    pitch: np.ndarray
    roll: np.ndarray
    fov_deg: tuple[float, float]    # (h, v)
    fps: float
    pose_file: str | None = None

    def meta(self) -> dict:
        """The poses JSON of this video (model.poses format plus what evaluation needs)."""
        from model.poses import Poses

        d = Poses(self.fov_deg, self.yaw, self.pitch, self.roll, fps=self.fps, source=self.trajectory).to_dict()
        d.update(width=int(self.pers.shape[2]), height=int(self.pers.shape[1]), num_frames=len(self.pers),
                 trajectory=self.trajectory, source_key=self.source_key)
        if self.pose_file:
            d["pose_file"] = self.pose_file
        return d


def _even_up(n: int) -> int:
    return n + (n % 2)


def render_input(frames: np.ndarray, yaw, pitch, roll, fov_deg, scale: float = 1.0) -> np.ndarray:
    """Perspective frames (T, h, w, 3) along a trajectory, at the panorama's pixel density."""
    from geometry import equirect_to_perspective
    from model.frames import native_render_hw

    h, w = native_render_hw(fov_deg, frames.shape[1:3], scale)
    return equirect_to_perspective(frames, tuple(fov_deg), yaw=yaw, pitch=pitch, roll=roll,
                                   out_hw=(_even_up(h), _even_up(w)))


def align_to_first(frames: np.ndarray, yaw, pitch, roll):
    """(panorama rotated so the first camera looks at its centre, relative poses R_0ᵀ·R_k)."""
    from geometry import rotate_equirect
    from model.poses import Poses

    rel = Poses((90.0,), yaw, pitch, roll).relative_to_first()
    gt = rotate_equirect(frames, float(yaw[0]), float(pitch[0]), float(roll[0]))
    return gt, rel.yaw, rel.pitch, rel.roll


def annotate_lines(pers: np.ndarray, max_lines: int, frames: Sequence[int] | None = None) -> dict:
    """Automatic line annotations of an input video: Hough lines at the first and middle frames.

    Returns the lines JSON: {"width", "height", "source", "frames": {"t": [[x1, y1, x2, y2], …]}}."""
    from model.eval.lines import detect_lines

    frames = sorted({0, len(pers) // 2}) if frames is None else frames
    found = {}
    for t in frames:
        lines = detect_lines(pers[t], max_lines=max_lines)
        if len(lines):
            found[str(int(t))] = np.round(lines, 2).tolist()
    return {"width": int(pers.shape[2]), "height": int(pers.shape[1]), "source": "hough-auto", "frames": found}


def _clip_rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def _safe_stem(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", Path(path).stem)


def protocol_videos(urls: Sequence[str], config, simulated: int = 1, pose_files: Sequence[str] = (),
                    limit: int | None = None, seed: int = 0, align: bool = True,
                    aspect_hw: tuple[int, int] = (9, 16)) -> Iterator[ProtocolVideo]:
    """Protocol videos from the clips in `urls` (shards), `simulated` simulated trajectories per
    clip plus one per poses file. `config` is a `model.data.PairConfig` (size, T, fps, trajectory
    ranges). A poses file with a single FoV number is taken as horizontal for an `aspect_hw` input."""
    from geometry import simulate_trajectory
    from model.data import load_frames
    from model.poses import Poses
    from shards.reader import iter_samples

    given = []
    for path in pose_files:
        poses = Poses.load(path)
        if len(poses) < config.num_frames:
            raise ValueError(f"--poses {path}: {len(poses)} frames of poses, the protocol needs "
                             f"{config.num_frames} (num_frames)")
        if poses.fps is not None and config.fps is not None and abs(poses.fps - config.fps) > 1e-6:
            log.warning("--poses %s: sampled at %s fps, clips at %s fps: replaying them frame by frame",
                        path, poses.fps, config.fps)
        given.append((path, poses.take(range(config.num_frames)), poses.fov_pair(aspect_hw)))

    fps = float(config.fps) if config.fps else None
    for n, sample in enumerate(iter_samples(list(urls), strict=True)):
        if limit is not None and n >= limit:
            break
        rng = _clip_rng(seed, sample.key)
        try:
            frames = load_frames(sample.mp4, rng, config, name=sample.key)
        except ValueError as e:  # a clip shorter than T frames at the config's fps
            log.warning("skipping %s: %s", sample.key, e)
            continue
        clip_fps = fps or float(sample.meta.get("fps", 0)) or 5.0
        trajectories = []
        for j in range(simulated):
            traj = simulate_trajectory(config.num_frames, rng, config.trajectory)
            trajectories.append((f"{sample.key}_sim{j}", "simulated", None,
                                 traj.yaw, traj.pitch, traj.roll, tuple(float(f) for f in traj.fov_deg)))
        for path, poses, fov in given:
            trajectories.append((f"{sample.key}_real_{_safe_stem(path)}", "real", str(path),
                                 poses.yaw, poses.pitch, poses.roll, fov))
        for name, kind, pose_file, yaw, pitch, roll, fov in trajectories:
            yaw, pitch, roll = (np.asarray(a, np.float64).reshape(-1) for a in (yaw, pitch, roll))
            pers = render_input(frames, yaw, pitch, roll, fov, config.render_scale)
            gt = frames
            if align:
                gt, yaw, pitch, roll = align_to_first(frames, yaw, pitch, roll)
            yield ProtocolVideo(name, kind, sample.key, pers, gt, yaw, pitch, roll, fov, clip_fps, pose_file)


def build_protocol(urls: Sequence[str], out: str | Path, config, simulated: int = 1,
                   pose_files: Sequence[str] = (), limit: int | None = None, seed: int = 0,
                   align: bool = True, annotate: int = 0) -> list[dict]:
    """Write the protocol directory (layout in the module docstring); returns the video records."""
    from shards.video import write_mp4

    out = Path(out)
    (out / "input").mkdir(parents=True, exist_ok=True)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    records = []
    videos = protocol_videos(urls, config, simulated, pose_files, limit, seed, align)
    for video in tqdm(videos, desc="protocol", unit="video"):
        meta = video.meta()
        write_mp4(out / "input" / f"{video.name}.mp4", video.pers, video.fps, crf=INPUT_CRF, bit_exact=True)
        write_mp4(out / "gt" / f"{video.name}.mp4", video.gt, video.fps, crf=GT_CRF, bit_exact=True)
        for folder in ("input", "gt"):
            (out / folder / f"{video.name}.json").write_text(json.dumps(meta, indent=1) + "\n")
        record = {"name": video.name, "trajectory": video.trajectory, "source_key": video.source_key,
                  "num_frames": len(video.pers), "input_hw": list(video.pers.shape[1:3]),
                  "fov_deg": list(video.fov_deg)}
        if annotate > 0:
            lines = annotate_lines(video.pers, annotate)
            if lines["frames"]:
                (out / "gt" / f"{video.name}.lines.json").write_text(json.dumps(lines, indent=1) + "\n")
            record["annotated_lines"] = sum(len(v) for v in lines["frames"].values())
        records.append(record)
    if not records:
        raise ValueError(f"--shards {list(urls)}: no usable clip (none found, or all shorter than "
                         f"{config.num_frames} frames at {config.fps} fps)")
    settings = {"config": config.to_dict(), "simulated": simulated, "pose_files": [str(p) for p in pose_files],
                "seed": seed, "align": align, "annotate_lines": annotate}
    (out / "protocol.json").write_text(json.dumps({"settings": settings, "videos": records}, indent=1) + "\n")
    return records


def load_video_meta(path: str | Path) -> dict:
    """Read a protocol video's poses JSON (NAME.json), checked: fov_deg, yaw/pitch/roll, width, height."""
    from model.poses import Poses, read_poses_json

    d = read_poses_json(path, missing="no poses file beside the ground truth (written by model.eval.protocol)")
    poses = Poses.from_dict(d, name=str(path))
    from shards.video import MAX_FRAME_PIXELS

    for key in ("width", "height"):
        if not isinstance(d.get(key), int) or isinstance(d[key], bool) or d[key] <= 0:
            raise ValueError(f"{path}: needs the input video's {key} (a positive int)")
    hw = (d["height"], d["width"])
    if hw[0] * hw[1] > MAX_FRAME_PIXELS:  # the visibility masks are computed at this size
        raise ValueError(f"{path}: declares an input of {hw[1]}×{hw[0]} = {hw[0] * hw[1]} pixels, over the "
                         f"limit of {MAX_FRAME_PIXELS} pixels per frame")
    return {"poses": poses, "fov_hv": poses.fov_pair(hw), "input_hw": hw,
            "trajectory": d.get("trajectory", "simulated"), "raw": d}


# ---------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model.eval.protocol", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", nargs="+", required=True, help="held-out shards: files, directories or globs")
    p.add_argument("--out", required=True, help="protocol directory to write")
    p.add_argument("--config", help="data YAML or train config (its data: section); default PairConfig()")
    p.add_argument("--height", type=int, help="equirect height (width = 2×height); overrides the config")
    p.add_argument("--frames", type=int, help="frames T per video; overrides the config")
    p.add_argument("--fps", type=float, help="frame rate the clips are sampled at; overrides the config")
    p.add_argument("--simulated", type=int, default=1, help="simulated trajectories per clip (default 1)")
    p.add_argument("--poses", nargs="*", default=[], help="poses JSON files of real trajectories, each "
                   "replayed on every clip")
    p.add_argument("--limit", type=int, help="use at most this many clips")
    p.add_argument("--annotate-lines", type=int, default=0, metavar="N",
                   help="write up to N automatic (Hough) line annotations per video (0 = none)")
    p.add_argument("--no-align", action="store_true", help="keep absolute poses and the unrotated clip")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from model.data import PairConfig

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = PairConfig.from_yaml(args.config) if args.config else PairConfig()
    changes = {}
    if args.height:
        changes.update(height=args.height, width=2 * args.height)
    if args.frames:
        changes["num_frames"] = args.frames
    if args.fps:
        changes["fps"] = args.fps
    if args.simulated < 0:
        raise SystemExit("--simulated: must be ≥ 0")
    if args.simulated == 0 and not args.poses:
        raise SystemExit("nothing to do: --simulated 0 and no --poses")
    config = config.replace(**changes, context_prob=0.0, circular_shift=False)
    records = build_protocol(args.shards, args.out, config, args.simulated, args.poses, args.limit,
                             args.seed, not args.no_align, args.annotate_lines)
    print(f"wrote {len(records)} videos to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
