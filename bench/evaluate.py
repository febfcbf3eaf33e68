"""Evaluation cost per video: each metric of `python -m model.eval.evaluate` on one 25-frame panorama.

    .venv/bin/python bench/evaluate.py [--height 256] [--frames 25] [--repeats 3] [--device cpu]
        [--musiq-frames 2] [--musiq PATH]

A synthetic equirect video (blocky texture with three great-circle lines) and a noisy copy stand
in for ground truth and prediction; the poses are a simulated trajectory (paper eq. 3, FoV 90°).
Times (median over repeats, after a warm-up): the visible-direction mask from the poses, masked
PSNR, masked LPIPS (AlexNet, random trunk: the cost is the same as with real weights), the four
square views + motion-smoothness proxy, imaging quality (VBench's MUSIQ via pyiqa on the four
views, `--musiq-frames` evenly spaced frames each; 0 = every frame as VBench; random weights of
the same architecture unless `--musiq` gives the real ones: the cost is the same), line consistency
(2 annotated frames × 2 neighbours, Hough + matching) and mp4 decoding of both videos. Prints one
table.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from geometry import equirect_to_perspective, simulate_trajectory, TrajectoryConfig  # noqa: E402
from model.eval.evaluate import every_nth, visible_masks  # noqa: E402
from model.poses import Poses  # noqa: E402
from model.eval.lines import detect_lines, draw_great_circles, great_circle_normal, line_consistency  # noqa: E402
from model.eval.metrics import ImagingQualityScorer, LPIPSMetric, motion_smoothness, psnr, square_views  # noqa: E402
from shards.video import decode_frames, write_mp4  # noqa: E402


def median_s(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--frames", type=int, default=25)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--musiq-frames", type=int, default=2, help="frames per view for MUSIQ (0: all, as VBench)")
    p.add_argument("--musiq", help="MUSIQ-SPAQ weights (default: random weights, same cost)")
    args = p.parse_args()
    H, W, T = args.height, 2 * args.height, args.frames

    rng = np.random.default_rng(0)
    base = (40 + 60 * rng.random((H // 8, W // 8, 3))).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    normals = [great_circle_normal((-40, 10), (40, -5)), great_circle_normal((-30, -20), (30, -12)),
               great_circle_normal((0, -40), (20, 30))]
    pano = draw_great_circles(base, normals, thickness=max(2, H // 64))
    gt = np.stack([np.roll(pano, t, axis=1) for t in range(T)])
    pred = np.clip(gt + rng.normal(0, 8, gt.shape), 0, 255).astype(np.uint8)
    cfg = TrajectoryConfig(hfov_deg=(90.0, 90.0), vfov_deg=(70.0, 70.0), yaw_offset_deg=(0.0, 0.0))
    traj = simulate_trajectory(T, rng, cfg)
    view_hw = (H // 2, int(H / 2 * np.tan(np.radians(45)) / np.tan(np.radians(35))) // 2 * 2)  # 90°×70°, square pixels
    pers = equirect_to_perspective(gt, traj.fov_deg, traj.yaw, traj.pitch, traj.roll, out_hw=view_hw)
    annotations = {t: detect_lines(pers[t], max_lines=6) for t in (0, T // 2)}
    meta = {"poses": Poses(traj.fov_deg, traj.yaw, traj.pitch, traj.roll), "fov_hv": traj.fov_deg, "input_hw": view_hw}
    mask = visible_masks(meta, (H, W), T).any(0)
    lp = LPIPSMetric(pnet_rand=True, device=args.device)
    views = square_views(pred)
    musiq_frames = args.musiq_frames or T

    with tempfile.TemporaryDirectory() as tmp:
        musiq = args.musiq
        if musiq is None:
            from pyiqa.archs.musiq_arch import MUSIQ

            musiq = Path(tmp) / "musiq_random.pth"
            torch.save(MUSIQ(pretrained=False).state_dict(), musiq)
        imaging = ImagingQualityScorer(musiq, device=args.device)
        write_mp4(Path(tmp) / "gt.mp4", gt, 5.0)
        write_mp4(Path(tmp) / "pred.mp4", pred, 5.0)
        rows = [
            ("decode both mp4", lambda: (decode_frames(Path(tmp) / "gt.mp4"), decode_frames(Path(tmp) / "pred.mp4"))),
            ("visible mask from poses", lambda: visible_masks(meta, (H, W), T)),
            ("PSNR (union mask)", lambda: psnr(pred, gt, mask)),
            ("LPIPS (union mask)", lambda: lp(pred, gt, mask)),
            ("4 square views + motion", lambda: [motion_smoothness(v) for v in square_views(pred).values()]),
            (f"imaging MUSIQ (4 views × {min(musiq_frames, T)} fr)",
             lambda: [imaging(every_nth(v, musiq_frames)) for v in views.values()]),
            ("line consistency (2 frames)", lambda: line_consistency(pred, annotations, traj.yaw, traj.pitch,
                                                                     traj.roll, traj.fov_deg, view_hw)),
        ]
        results = [(name, median_s(fn, args.repeats)) for name, fn in rows]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{T} frames of {W}×{H}, input view {view_hw[1]}×{view_hw[0]}, "
          f"{sum(len(a) for a in annotations.values())} annotated lines; median of {args.repeats}")
    print(f"{'metric':32s} {'s/video':>8s} {'ms/frame':>9s}")
    for name, s in results:
        print(f"{name:32s} {s:8.3f} {s / T * 1e3:9.1f}")
    total = sum(s for _, s in results)
    print(f"{'total':32s} {total:8.3f} {total / T * 1e3:9.1f}")
    musiq_s = next(s for name, s in results if name.startswith("imaging"))
    print(f"MUSIQ: {musiq_s / (4 * min(musiq_frames, T)) * 1e3:.1f} ms per scored {views['front'].shape[1]}² view frame")


if __name__ == "__main__":
    main()
