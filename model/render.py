"""Viewpoint control (paper §4.3): a perspective video rendered from any equirect video along a
camera path of keyframes.

A camera path is data (JSON or YAML):

    keyframes:                      # sorted by time; t in seconds (or `frame:` for a frame index)
      - {t: 0.0, yaw: 0,   pitch: 0,  roll: 0, fov: 90}
      - {t: 2.0, yaw: 180, pitch: 10}          # a missing value keeps the previous keyframe's
      - {t: 4.0, yaw: 360, fov: 60}

Between keyframes every angle is interpolated linearly *as written* (yaw 0 → 360 is a full turn
to the right; yaw 170 → −170 turns 340° left), and held before the first / after the last key.
`fov` is horizontal (the vertical follows from the output size, square pixels).

CLI:  python -m model.render --input pano.mp4 --output view.mp4 --path path.yaml [--size 640x360]
      python -m model.render --input pano.mp4 --output view.mp4 --key 0:0,0,0,90 --key 4:360,0,0,90
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

ANGLES = ("yaw", "pitch", "roll", "fov")
DEFAULTS = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "fov": 90.0}
CHUNK = 32  # frames decoded and rendered at a time: bounds memory on long videos


@dataclass(frozen=True)
class Keyframe:
    t: float                 # seconds
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    fov: float | None = None


def parse_size(text: str, name: str = "--size") -> tuple[int, int]:
    """'640x360' → (h, w) = (360, 640); both even (H.264 yuv420p)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"{name}: expected WIDTHxHEIGHT, e.g. 640x360, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise ValueError(f"{name}: width and height must be positive and even, got {text!r}")
    return h, w


def parse_key(text: str) -> Keyframe:
    """'T:YAW,PITCH,ROLL[,FOV]' (T in seconds) → Keyframe."""
    try:
        t, rest = text.split(":", 1)
        values = [float(v) for v in rest.split(",")]
        if len(values) not in (3, 4):
            raise ValueError
    except ValueError:
        raise ValueError(f"--key: expected T:YAW,PITCH,ROLL[,FOV], got {text!r}") from None
    return Keyframe(float(t), *values)


def keyframes_from_dict(d, fps: float, name: str = "camera path") -> list[Keyframe]:
    """Keyframes from the path file's data (see the module docstring); `frame:` uses `fps`."""
    items = d.get("keyframes") if isinstance(d, dict) else d
    if not isinstance(items, list) or not items:
        raise ValueError(f"{name}: expected a non-empty list under 'keyframes'")
    keys = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{name}: keyframe {i} is not a mapping")
        unknown = set(item) - {"t", "frame", *ANGLES}
        if unknown:
            raise ValueError(f"{name}: keyframe {i} has unknown key(s) {sorted(unknown)}; "
                             f"known: t, frame, {', '.join(ANGLES)}")
        if ("t" in item) == ("frame" in item):
            raise ValueError(f"{name}: keyframe {i} needs exactly one of 't' (seconds) or 'frame'")
        t = float(item["t"]) if "t" in item else float(item["frame"]) / fps
        keys.append(Keyframe(t, *(None if item.get(k) is None else float(item[k]) for k in ANGLES)))
    return keys


def load_keyframes(path: str | Path, fps: float) -> list[Keyframe]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such camera path file")
    from shards.schema import loads_bounded

    if path.stat().st_size > 2**20:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, over the 1 MiB limit for a camera path file")
    text = path.read_text()
    try:
        d = loads_bounded(text, str(path)) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as e:
        raise ValueError(f"{path}: cannot be parsed ({e})") from None
    return keyframes_from_dict(d, fps, name=str(path))


def path_angles(keyframes: Sequence[Keyframe], num_frames: int, fps: float) -> dict[str, np.ndarray]:
    """Per-frame yaw, pitch, roll, fov (T,) in degrees: keyframes filled forward, then linear in t.

    Frame k is at t = k / fps.
    """
    if not keyframes:
        raise ValueError("camera path: no keyframes")
    keys = sorted(keyframes, key=lambda k: k.t)
    if any(b.t == a.t for a, b in zip(keys, keys[1:])):
        raise ValueError("camera path: two keyframes at the same time")
    filled, current = [], dict(DEFAULTS)
    for k in keys:  # a value left out keeps the previous keyframe's (or the default)
        current = {a: current[a] if getattr(k, a) is None else getattr(k, a) for a in ANGLES}
        filled.append(current)
    fov = np.array([f["fov"] for f in filled])
    if np.any((fov <= 0) | (fov >= 180)):
        raise ValueError(f"camera path: fov must lie in (0°, 180°), got {fov.tolist()}")
    t = np.arange(num_frames) / fps
    kt = np.array([k.t for k in keys])
    return {a: np.interp(t, kt, np.array([f[a] for f in filled])) for a in ANGLES}


def render_views(equi: np.ndarray, angles: dict[str, np.ndarray], out_hw: tuple[int, int]) -> np.ndarray:
    """(T, H, 2H, 3) equirect frames → (T, h, w, 3) perspective views at per-frame angles."""
    from geometry import equirect_to_perspective

    return equirect_to_perspective(equi, angles["fov"], yaw=angles["yaw"], pitch=angles["pitch"],
                                   roll=angles["roll"], out_hw=out_hw)


def render_video(src, angles_for, num_frames: int, out_hw: tuple[int, int], desc: str = "rendering",
                 rotate=None) -> np.ndarray:
    """Decode `src` in chunks and render each chunk: `angles_for(indices)` → angles dict.

    `rotate(chunk, indices)`, when given, maps decoded equirect frames first (used by stabilize).
    """
    from tqdm import tqdm

    from shards.video import decode_frames

    out = []
    for start in tqdm(range(0, num_frames, CHUNK), desc=desc, unit="chunk"):
        idx = np.arange(start, min(start + CHUNK, num_frames))
        equi = decode_frames(src, indices=idx)
        if equi.shape[2] != 2 * equi.shape[1]:
            raise ValueError(f"{src}: not an equirect video (frames are {equi.shape[2]}×{equi.shape[1]}, "
                             "expected width = 2 × height)")
        if rotate is not None:
            equi = rotate(equi, idx)
        out.append(render_views(equi, angles_for(idx), out_hw))
    return np.concatenate(out)


def main(argv: Sequence[str] | None = None) -> int:
    from shards.video import MAX_FRAME_PIXELS, check_frame_budget, probe, write_mp4

    parser = argparse.ArgumentParser(prog="python -m model.render", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="equirect (360°) video")
    parser.add_argument("--output", required=True, help="perspective mp4 to write")
    parser.add_argument("--path", help="camera path file (YAML or JSON keyframes)")
    parser.add_argument("--key", action="append", default=[], help="keyframe T:YAW,PITCH,ROLL[,FOV] (repeatable)")
    parser.add_argument("--size", default="640x360", help="output WIDTHxHEIGHT (default 640x360)")
    parser.add_argument("--crf", type=int, default=18)
    args = parser.parse_args(argv)
    try:
        out_hw = parse_size(args.size)
        info = probe(args.input)
        if info.width != 2 * info.height:
            raise ValueError(f"{args.input}: not an equirect video ({info.width}×{info.height}, expected 2:1)")
        check_frame_budget(info.width, info.height, MAX_FRAME_PIXELS, str(args.input))  # frames decode in chunks
        if args.path and args.key:
            raise ValueError("give either --path or --key, not both")
        keys = (load_keyframes(args.path, info.fps) if args.path
                else [parse_key(k) for k in args.key] or [Keyframe(0.0)])
        angles = path_angles(keys, info.num_frames, info.fps)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    frames = render_video(args.input, lambda idx: {a: v[idx] for a, v in angles.items()}, info.num_frames, out_hw)
    write_mp4(args.output, frames, info.fps, crf=args.crf)
    print(f"wrote {args.output}: {len(frames)} frames {out_hw[1]}×{out_hw[0]} at {info.fps:g} fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
