"""Evaluate generated 360° videos against the protocol's ground truth: the paper's Table 1.

    python -m model.eval.evaluate --pred DIR --gt DIR [--out DIR] [--name METHOD]
        [--lpips-weights alexnet.pth] [--i3d i3d_torchscript.pt]
        [--clip CLIP_DIR --aesthetic-head head.pth] [--musiq musiq_spaq_ckpt-358bb6af.pth]
        [--mask union|frame|full] [--device auto]

Per video, then averaged per trajectory kind (real / simulated, the two halves of Table 1):
- PSNR and LPIPS inside the mask of visible directions, aggregated over frames (supp. §3.4). The
  mask is rebuilt from the poses file beside the ground truth (`geometry.perspective_to_equirect`
  of the input frame size at each pose). `--mask union` (default): the directions the input shows
  at *any* frame, applied to every frame — the paper's "visible directions ... aggregated across
  frames", whose caveat ("visible areas at timestamp 0 may not appear at timestamp T") only makes
  sense for this union; `--mask frame`: each frame's own visible region (the condition's mask);
  `--mask full`: the whole panorama (what the input does not show included).
- FVD (needs `--i3d`, a local I3D TorchScript file) on the full panoramas, per trajectory kind.
- VBench-style scores on four square 90° views (front, right, back, left) of the generated video:
  motion smoothness (a frame-interpolation proxy without weights, see `model.eval.metrics`), aesthetic
  quality (needs `--clip` and `--aesthetic-head`), imaging quality (VBench's MUSIQ-SPAQ via pyiqa;
  needs `--musiq`, a local copy of the weights).
- Line consistency (EA-score, `model.eval.lines`) for videos with a NAME.lines.json beside the gt.

Directory layout (docs/evaluation.md): GT_DIR/NAME.mp4 + GT_DIR/NAME.json (+ NAME.lines.json),
as written by `python -m model.eval.protocol` under OUT/gt (giving the protocol root OUT also works);
PRED_DIR/NAME.mp4, or PRED_DIR/NAME/panorama.mp4 as `python -m model.generate --output
PRED_DIR/NAME` writes it. Writes OUT/report.json and OUT/report.md.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

log = logging.getLogger("model.eval.evaluate")

GROUPS = ("real", "simulated")
# Table 1 columns: (key in the per-video record / summary, header, decimals)
COLUMNS = (("psnr", "PSNR↑", 2), ("lpips", "LPIPS↓", 4), ("fvd", "FVD↓", 1), ("imaging", "Imag.↑", 4),
           ("aesthetic", "Aes.↑", 4), ("motion", "Motion↑", 4))
IMAGING_SKIPPED = ("no --musiq PATH (pyiqa's MUSIQ-SPAQ weights, musiq_spaq_ckpt-358bb6af.pth): "
                   "imaging quality not computed")


@dataclass
class EvalConfig:
    mask: str = "union"                 # "union" (default, paper), "frame" or "full" (whole panorama)
    device: str = "auto"
    lpips_weights: str | None = None    # torchvision AlexNet state dict (else the torch cache, else random)
    lpips_random: bool = False          # force the random trunk (tests)
    i3d: str | None = None              # I3D TorchScript for FVD
    clip: str | None = None             # transformers CLIP directory for aesthetic quality
    aesthetic_head: str | None = None   # LAION aesthetic linear head
    musiq: str | None = None            # pyiqa MUSIQ-SPAQ weights for imaging quality
    musiq_frames: int | None = None     # score this many evenly spaced frames per view (default: all, as VBench)
    view_size: int | None = None        # side of the four square views (default H/2)
    fvd_frames: int = 16
    max_frame_pixels: int | None = None  # per source frame; None → shards.video.MAX_FRAME_PIXELS
    max_video_pixels: int | None = None  # decoded pixels held per video; None → shards.video.MAX_VIDEO_PIXELS


# ------------------------------------------------------------------------------- inputs
def find_videos(pred_dir: Path, gt_dir: Path) -> list[dict]:
    """Pair every ground-truth video with its prediction; a missing prediction is an error."""
    if (gt_dir / "gt").is_dir() and (gt_dir / "protocol.json").is_file():
        gt_dir = gt_dir / "gt"  # the protocol root was given
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"--gt: {gt_dir} is not a directory")
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"--pred: {pred_dir} is not a directory")
    gts = sorted(gt_dir.glob("*.mp4"))
    if not gts:
        raise ValueError(f"--gt: no .mp4 in {gt_dir} (expected NAME.mp4 + NAME.json from model.eval.protocol)")
    pairs, missing = [], []
    for gt in gts:
        name = gt.stem
        candidates = [pred_dir / f"{name}.mp4", pred_dir / name / "panorama.mp4"]
        pred = next((c for c in candidates if c.is_file()), None)
        if pred is None:
            missing.append(name)
            continue
        lines = gt_dir / f"{name}.lines.json"
        pairs.append({"name": name, "pred": pred, "gt": gt, "meta": gt_dir / f"{name}.json",
                      "lines": lines if lines.is_file() else None})
    if missing:
        raise FileNotFoundError(f"--pred: no prediction in {pred_dir} for {len(missing)} ground-truth video(s): "
                                f"{missing[:5]} (expected NAME.mp4 or NAME/panorama.mp4)")
    return pairs


def load_pair(pred_path: Path, gt_path: Path, max_frame_pixels: int | None = None,
              max_video_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode both videos within the decode budget (shards.video); the prediction is resized to the
    ground truth's size as it is decoded and both are cut to the shorter length (each adjustment
    is reported in the returned notes)."""
    from shards.video import MAX_FRAME_PIXELS, MAX_VIDEO_PIXELS, decode_frames, probe

    budget = dict(max_frame_pixels=max_frame_pixels or MAX_FRAME_PIXELS,
                  max_video_pixels=max_video_pixels or MAX_VIDEO_PIXELS)
    infos = {"pred": probe(pred_path), "gt": probe(gt_path)}
    notes = []
    for name, path in (("pred", pred_path), ("gt", gt_path)):
        w, h = infos[name].width, infos[name].height
        if w != 2 * h:
            raise ValueError(f"{path}: {w}×{h} is not an equirect video (width = 2 × height)")
    gt = decode_frames(gt_path, **budget)
    size = (gt.shape[2], gt.shape[1])
    pw, ph = infos["pred"].width, infos["pred"].height
    if (pw, ph) != size:
        notes.append(f"prediction resized from {pw}×{ph} to {size[0]}×{size[1]}")
        pred = decode_frames(pred_path, size=size, **budget)
    else:
        pred = decode_frames(pred_path, **budget)
    if len(pred) != len(gt):
        notes.append(f"frame counts differ (pred {len(pred)}, gt {len(gt)}): first {min(len(pred), len(gt))} compared")
        n = min(len(pred), len(gt))
        pred, gt = pred[:n], gt[:n]
    return pred, gt, notes


def visible_masks(meta: dict, equi_hw: tuple[int, int], num_frames: int) -> np.ndarray:
    """Per-frame visibility (T, H, W) of the input view in the equirect, from the poses file."""
    from geometry import perspective_to_equirect

    poses = meta["poses"]
    if len(poses) < num_frames:
        raise ValueError(f"poses: {len(poses)} frames for a {num_frames}-frame video")
    h, w = meta["input_hw"]
    ones = np.ones((num_frames, h, w, 1), np.float32)
    _, mask = perspective_to_equirect(ones, meta["fov_hv"], yaw=poses.yaw[:num_frames],
                                      pitch=poses.pitch[:num_frames], roll=poses.roll[:num_frames], out_hw=equi_hw)
    return mask


def load_lines(path: Path, input_hw: tuple[int, int]) -> dict[int, np.ndarray]:
    """A lines JSON → {frame: segments (N, 4)} in input pixels (rescaled if annotated at another size)."""
    from model.poses import read_poses_json

    try:
        d = read_poses_json(path, missing="no such lines file")  # size- and depth-bounded JSON
        frames = d["frames"]
        for key in ("width", "height"):
            if not isinstance(d[key], int) or isinstance(d[key], bool) or not 0 < d[key] <= 65536:
                raise ValueError(f"'{key}' must be an int in [1, 65536], got {d[key]!r}")
        scale = np.array([input_hw[1] / d["width"], input_hw[0] / d["height"]] * 2)
        out = {int(t): np.asarray(s, np.float64).reshape(-1, 4) * scale for t, s in frames.items()}
        if any(not np.isfinite(s).all() for s in out.values()):
            raise ValueError("segments must be finite numbers")
        return out
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: not a lines file ({{'width', 'height', 'frames': {{t: [[x1,y1,x2,y2],…]}}}}): {e}") from None


def every_nth(video: np.ndarray, num_frames: int | None) -> np.ndarray:
    """`num_frames` evenly spaced frames of a video (all of them when None or ≥ its length)."""
    if not num_frames or num_frames >= len(video):
        return video
    return video[np.linspace(0, len(video) - 1, num_frames).round().astype(int)]


# ------------------------------------------------------------------------------ report
def _clean(x):
    """JSON-safe numbers: ∞ → "inf", NaN → null."""
    if isinstance(x, float):
        return "inf" if x == math.inf else (None if math.isnan(x) else x)
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else None


def _fmt(value, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == math.inf:
        return "∞"
    return f"{value:.{decimals}f}"


def summarise(records: list[dict], fvd_by_group: dict) -> dict:
    summary = {}
    for group in GROUPS:
        rows = [r for r in records if r["trajectory"] == group]
        if not rows:
            continue
        summary[group] = {"videos": len(rows), "fvd": fvd_by_group.get(group)}
        for key in ("psnr", "lpips", "imaging", "aesthetic", "motion"):
            summary[group][key] = _mean(r.get(key) for r in rows)
    summary["line_consistency"] = _mean(r.get("line_consistency") for r in records)
    summary["line_consistency_gt"] = _mean(r.get("line_consistency_gt") for r in records)
    summary["line_videos"] = sum(r.get("line_consistency") is not None for r in records)
    return summary


def markdown_report(summary: dict, records: list[dict], method: str, skipped: dict, settings: dict) -> str:
    """Table 1's layout: one row per method, real then simulated trajectories, then line consistency."""
    head = ["Method"]
    cells = [method]
    for group in GROUPS:
        label = "Real" if group == "real" else "Sim."
        for key, title, dec in COLUMNS:
            head.append(f"{label} {title}")
            cells.append(_fmt(summary.get(group, {}).get(key), dec))
    head.append("Line cons.↑")
    cells.append(_fmt(summary.get("line_consistency"), 4))
    out = ["# Evaluation (paper Table 1 layout)", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head), "| " + " | ".join(cells) + " |", ""]
    counts = ", ".join(f"{g}: {summary[g]['videos']}" for g in GROUPS if g in summary)
    out += [f"Videos: {counts}; with line annotations: {summary.get('line_videos', 0)} (line consistency of the "
            f"ground truth itself: {_fmt(summary.get('line_consistency_gt'), 4)}). "
            f"PSNR/LPIPS mask: {settings['mask']}. – = not computed (see below).", ""]
    if skipped:
        out += ["Not computed / caveats:", ""] + [f"- {k}: {v}" for k, v in skipped.items()] + [""]
    out += ["## Per video", "",
            "| Video | Trajectory | Frames | PSNR↑ | LPIPS↓ | Imag.↑ | Aes.↑ | Motion↑ | Line cons.↑ |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        out.append(f"| {r['name']} | {r['trajectory']} | {r['frames']} | {_fmt(r['psnr'], 2)} | "
                   f"{_fmt(r['lpips'], 4)} | {_fmt(r.get('imaging'), 4)} | {_fmt(r.get('aesthetic'), 4)} | "
                   f"{_fmt(r['motion'], 4)} | "
                   f"{_fmt(r.get('line_consistency'), 4)} |")
    notes = [f"- {r['name']}: {n}" for r in records for n in r.get("notes", [])]
    if notes:
        out += ["", "Notes:", ""] + notes
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ evaluate
@functools.lru_cache(maxsize=2)
def load_lpips(weights: str | None, device: str, random_trunk: bool):
    """The LPIPS model, loaded once per process and settings (repeated evaluations reuse it)."""
    from model.eval.metrics import LPIPSMetric

    return LPIPSMetric(weights, device=device, pnet_rand=random_trunk or None)


def evaluate(pred_dir: str | Path, gt_dir: str | Path, config: EvalConfig | None = None,
             method: str | None = None) -> dict:
    """Score every video; returns {"summary", "videos", "skipped", "settings", "markdown"}."""
    import torch

    from model.eval.lines import line_consistency
    from model.eval.metrics import (AestheticScorer, I3DFeatures, ImagingQualityScorer, fvd, motion_smoothness, psnr,
                               square_views)
    from model.eval.protocol import load_video_meta

    config = config or EvalConfig()
    if config.mask not in ("union", "frame", "full"):
        raise ValueError(f"--mask: expected 'union', 'frame' or 'full', got {config.mask!r}")
    if config.musiq_frames is not None and config.musiq_frames < 1:
        raise ValueError(f"--musiq-frames: expected ≥ 1 frame, got {config.musiq_frames}")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    pairs = find_videos(pred_dir, gt_dir)
    method = method or pred_dir.resolve().name
    # every poses / lines file is read and checked before any model loads: a bad one fails fast
    for item in pairs:
        item["meta_checked"] = load_video_meta(item["meta"])
        if item["lines"] is not None:
            item["lines_checked"] = load_lines(item["lines"], item["meta_checked"]["input_hw"])

    # models load once, here (each missing set of weights becomes a "skipped" entry)
    skipped = {}
    lpips_metric = load_lpips(config.lpips_weights, device, config.lpips_random)
    if lpips_metric.random_trunk:
        skipped["lpips_weights"] = ("LPIPS computed with a random AlexNet trunk (no --lpips-weights, nothing in "
                                    "the torch cache): not comparable to published values")
    i3d = I3DFeatures(config.i3d, device=device, num_frames=config.fvd_frames) if config.i3d else None
    if i3d is None:
        skipped["fvd"] = "no --i3d PATH (I3D TorchScript weights): FVD not computed"
    imaging = ImagingQualityScorer(config.musiq, device=device) if config.musiq else None
    if imaging is None:
        skipped["imaging"] = IMAGING_SKIPPED
    elif config.musiq_frames:
        skipped["imaging_note"] = (f"imaging quality scored on {config.musiq_frames} evenly spaced frames per view "
                                   "(VBench scores every frame)")
    aesthetic = None
    if config.clip and config.aesthetic_head:
        aesthetic = AestheticScorer(config.clip, config.aesthetic_head, device=device)
    else:
        skipped["aesthetic"] = "needs --clip DIR and --aesthetic-head PATH: aesthetic quality not computed"
    skipped["motion_note"] = ("motion smoothness is a linear frame-interpolation proxy of VBench's AMT-based "
                              "score (same form and range, not numerically comparable)")
    for message in skipped.values():
        print(f"[evaluate] {message}")

    records, features = [], {g: ([], []) for g in GROUPS}
    for item in tqdm(pairs, desc="evaluate", unit="video"):
        meta = item["meta_checked"]
        group = meta["trajectory"] if meta["trajectory"] in GROUPS else "simulated"
        pred, gt, notes = load_pair(item["pred"], item["gt"], config.max_frame_pixels, config.max_video_pixels)
        masks = visible_masks(meta, gt.shape[1:3], len(gt))
        mask = {"union": masks.any(0), "frame": masks, "full": np.ones_like(masks)}[config.mask]
        record = {"name": item["name"], "trajectory": group, "frames": len(gt),
                  "visible_fraction": float(np.mean(mask)),
                  "psnr": psnr(pred, gt, mask), "lpips": lpips_metric(pred, gt, mask)}
        views = square_views(pred, size=config.view_size)
        record["motion"] = float(np.mean([motion_smoothness(v) for v in views.values()]))
        record["aesthetic"] = float(np.mean([aesthetic(v) for v in views.values()])) if aesthetic else None
        record["imaging"] = (float(np.mean([imaging(every_nth(v, config.musiq_frames)) for v in views.values()]))
                             if imaging else None)
        if item["lines"] is not None:
            poses = meta["poses"]
            annotations = item["lines_checked"]
            if any(t >= len(gt) for t in annotations):
                notes.append(f"line annotations beyond frame {len(gt) - 1} ignored")
                annotations = {t: s for t, s in annotations.items() if t < len(gt)}
            angles = (poses.yaw[:len(gt)], poses.pitch[:len(gt)], poses.roll[:len(gt)])
            record["line_consistency"] = line_consistency(pred, annotations, *angles, meta["fov_hv"], meta["input_hw"])
            # the same on the ground truth: the ceiling the annotations and the detector allow
            record["line_consistency_gt"] = line_consistency(gt, annotations, *angles, meta["fov_hv"], meta["input_hw"])
        if i3d is not None:
            features[group][0].append(i3d(pred))
            features[group][1].append(i3d(gt))
        if notes:
            record["notes"] = notes
        records.append(record)

    fvd_by_group = {}
    for group, (fp, fg) in features.items():
        if i3d is None or not fp:
            continue
        if len(fp) < 2:
            skipped[f"fvd_{group}"] = f"FVD needs ≥ 2 {group} videos (got {len(fp)})"
            continue
        fvd_by_group[group] = fvd(np.stack(fp), np.stack(fg))
    summary = summarise(records, fvd_by_group)
    settings = asdict(config) | {"device": device, "pred": str(pred_dir), "gt": str(gt_dir)}
    report = {"method": method, "summary": summary, "videos": records, "skipped": skipped, "settings": settings}
    report["markdown"] = markdown_report(summary, records, method, skipped, settings)
    return report


def write_report(report: dict, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "report.md"
    md.write_text(report["markdown"])
    js = out / "report.json"
    js.write_text(json.dumps(_clean({k: v for k, v in report.items() if k != "markdown"}), indent=1) + "\n")
    return js, md


# ---------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model.eval.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pred", required=True, help="generated panoramas: NAME.mp4 or NAME/panorama.mp4")
    p.add_argument("--gt", required=True, help="ground truth: the protocol's gt/ directory (or its root)")
    p.add_argument("--out", help="where to write report.json and report.md (default: PRED/../eval_<pred name>)")
    p.add_argument("--name", help="method name in the table (default: the --pred directory's name)")
    p.add_argument("--mask", default="union", choices=["union", "frame", "full"],
                   help="PSNR/LPIPS region: directions visible at any frame (union, default), per frame, "
                        "or the whole panorama (full)")
    p.add_argument("--lpips-weights", help="torchvision AlexNet state dict for the LPIPS trunk")
    p.add_argument("--lpips-random", action="store_true", help="use a random LPIPS trunk (testing only)")
    p.add_argument("--i3d", help="I3D TorchScript file for FVD (skipped without it)")
    p.add_argument("--clip", help="transformers CLIP directory (ViT-L/14) for aesthetic quality")
    p.add_argument("--aesthetic-head", help="LAION aesthetic linear head (.pth) for aesthetic quality")
    p.add_argument("--musiq", help="pyiqa MUSIQ-SPAQ weights (musiq_spaq_ckpt-358bb6af.pth) for imaging quality")
    p.add_argument("--musiq-frames", type=int,
                   help="imaging quality on N evenly spaced frames per view (default: every frame, as VBench)")
    p.add_argument("--view-size", type=int, help="side of the four square views (default: panorama height / 2)")
    p.add_argument("--device", default="auto", help="cpu, cuda, … (default: cuda when available)")
    p.add_argument("--max-frame-pixels", type=int, help="refuse videos with larger frames (default 8192×4096)")
    p.add_argument("--max-video-pixels", type=int, help="refuse videos that decode to more pixels in all "
                   "(default 2^28 = 268 M)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = EvalConfig(mask=args.mask, device=args.device, lpips_weights=args.lpips_weights,
                        lpips_random=args.lpips_random, i3d=args.i3d, clip=args.clip,
                        aesthetic_head=args.aesthetic_head, musiq=args.musiq, musiq_frames=args.musiq_frames,
                        view_size=args.view_size, max_frame_pixels=args.max_frame_pixels,
                        max_video_pixels=args.max_video_pixels)
    t0 = time.perf_counter()
    try:
        report = evaluate(args.pred, args.gt, config, args.name)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or Path(args.pred).resolve().parent / f"eval_{Path(args.pred).resolve().name}"
    js, md = write_report(report, out)
    print(report["markdown"])
    print(f"wrote {js} and {md} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
