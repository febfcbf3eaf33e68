"""Generation benchmarks: seconds per window, seam discontinuity, pose-estimation accuracy.

    .venv/bin/python bench/generate.py [--steps 10] [--threads N]

1. Tiny random SVD on the CPU (`model.network.build_tiny_svd`, saved and loaded back): wall and
   CPU seconds per window, with plain and blended decoding.
2. Seam discontinuity |Y[..., 0] − Y[..., W−1]| of the tiny VAE on the latents of a seamless
   panorama: plain decoding vs blended decoding at band ½ (paper), ¼ and 1/16 of W.
3. Rotation-only pose estimation on perspective clips rendered along known trajectories.
4. On a GPU only: a full-size SVD-XT architecture (random weights: the speed does not depend on
   them) generating 25 frames at 512×1024 with 25 steps, with and without blended decoding.
   Without a GPU these rows say so.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geometry import equirect_to_perspective, rotation_matrix  # noqa: E402
from model import edm  # noqa: E402
from model.generate import (GenerateConfig, blended_decode, column_step, generate_panorama,  # noqa: E402
                            scheduler_sigmas, seam_discontinuity)
from model.network import SVD, build_tiny_svd, load_svd, vae_decode, vae_encode  # noqa: E402
from model.poses import Poses, estimate_poses, rotation_angle_deg  # noqa: E402


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for s, a in ((8, 1.0), (32, 0.6), (128, 0.4), (256, 0.3)):
        img += a * cv2.resize(rng.random((max(2, s // 2), s, 3)).astype(np.float32), (w, h),
                              interpolation=cv2.INTER_CUBIC)
    img -= img.min()
    return (img / img.max() * 255).astype(np.uint8)


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


def time_window(svd, pers, poses, cfg, sigmas) -> tuple[float, float]:
    """(wall s, CPU s) for one window of cfg.window frames."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    w0, c0 = time.perf_counter(), time.process_time()
    generate_panorama(svd, pers, poses, cfg, sigmas, fps_id=5.0)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - w0, time.process_time() - c0


def bench_tiny(steps: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        for T, H in ((8, 32), (25, 32)):
            path = build_tiny_svd(Path(tmp) / f"tiny_{T}", num_frames=T)
            svd = load_svd(path)
            n = np.arange(float(T))
            pers = equirect_to_perspective(texture(256, 512), 90, 2 * n, 0 * n, 0 * n, out_hw=(48, 64))
            poses = Poses(90.0, 2 * n, 0 * n, 0 * n)
            sigmas = scheduler_sigmas(path, steps)
            for blend in (False, True):
                cfg = GenerateConfig(height=H, window=T, context=min(5, T // 4), steps=steps, blend=blend)
                time_window(svd, pers[:2], poses.take([0, 1]), replace(cfg, steps=1), sigmas[-2:])  # warm-up
                wall, cpu = time_window(svd, pers, poses, cfg, sigmas)
                rows.append([f"tiny SVD, CPU ({torch.get_num_threads()} threads)", T, f"{H}x{2 * H}", steps,
                             "blended" if blend else "plain", f"{wall:.2f}", f"{cpu:.2f}"])
    table("Seconds per window (guidance 3 constant: two UNet passes per step, batched)",
          ["model / device", "T", "equirect", "steps", "decoding", "wall s", "CPU s"], rows)


def bench_seam() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-seam-") as tmp:
        svd = load_svd(build_tiny_svd(Path(tmp) / "tiny"))
        H, W = 64, 128
        lon = (torch.arange(W) + 0.5) / W * 2 * np.pi
        lat = (torch.arange(H) + 0.5) / H * np.pi
        img = torch.stack([torch.sin(lon)[None].expand(H, W), torch.cos(2 * lon)[None] * torch.sin(lat)[:, None],
                           torch.cos(lat)[:, None].expand(H, W)]) * 0.8
        frames = img[None, None].repeat(1, 4, 1, 1, 1)
        z = vae_encode(svd.vae, frames) * svd.vae.config.scaling_factor

        def decode(z):
            return vae_decode(svd.vae, z)
        plain = decode(z)
        rows = [["input panorama", f"{seam_discontinuity(frames):.4f}", f"{column_step(frames):.4f}"],
                ["plain decoding", f"{seam_discontinuity(plain):.4f}", f"{column_step(plain):.4f}"]]
        for band, name in ((0.5, "½ (paper eq. 5)"), (0.25, "¼"), (0.0625, "1/16")):
            y = blended_decode(decode, z, band)
            rows.append([f"blended, band {name}", f"{seam_discontinuity(y):.4f}", f"{column_step(y):.4f}"])
    table("Seam discontinuity, tiny random VAE, latents of a seamless 64x128 panorama (values in [-1, 1])",
          ["decoding", "mean |col 0 - col W-1|", "mean |neighbour column step|"], rows)


def bench_poses() -> None:
    world = texture(512, 1024)
    k = np.arange(16.0)
    cases = {"pan 3°/frame, FoV 60": (k * 3.0, 5 + 0 * k, 0 * k, 60.0),
             "tilt 2°/frame, FoV 80": (10 + 0 * k, k * 2.0 - 10, 0 * k, 80.0),
             "roll 2.5°/frame, FoV 100": (30 + 0 * k, 0 * k, k * 2.5, 100.0),
             "handheld shake + pan, FoV 90": (2 * np.sin(k / 3) + k * 1.5, 3 * np.cos(k / 2) - 3, 2 * np.sin(k / 4), 90.0)}
    rows = []
    for name, (yaw, pitch, roll, fov) in cases.items():
        pers = equirect_to_perspective(world, fov, yaw, pitch, roll, out_hw=(144, 192))
        t0 = time.perf_counter()
        poses = estimate_poses(pers, fov)
        dt = time.perf_counter() - t0
        truth = rotation_matrix(yaw, pitch, roll)
        err = rotation_angle_deg(np.swapaxes(poses.matrices(), -1, -2) @ (truth[0].T @ truth))[1:]
        rows.append([name, len(k), f"{np.median(err):.3f}", f"{err.max():.3f}", f"{1000 * dt / (len(k) - 1):.0f}"])
    table("Pose estimation on 192x144 clips rendered from a textured 1024x512 panorama (error vs truth, relative to frame 0)",
          ["trajectory", "frames", "median err °", "max err °", "ms / frame pair"], rows)


def full_size_svd(dtype) -> SVD:
    """SVD-XT's published architecture (configs/train/svd_xt) with random weights, on the GPU."""
    from transformers import CLIPImageProcessor

    from model.network import build_svd_xt_random

    with torch.device("cuda"):
        unet, vae, clip = build_svd_xt_random(dtype)
    return SVD(unet.eval(), vae.eval(), clip.eval(), CLIPImageProcessor(), Path("random-full-size"))


def bench_gpu(steps: int) -> None:
    header = ["model / device", "T", "equirect", "steps", "decoding", "wall s"]
    if not torch.cuda.is_available():
        table("Seconds per 25-frame 512x1024 generation on a GPU (paper: about 90 s on an A6000)", header,
              [["full-size SVD-XT architecture", 25, "512x1024", 25, d, "not measured: no GPU machine lent"]
               for d in ("plain", "blended")])
        return
    svd = full_size_svd(torch.bfloat16)  # as generation runs on a GPU by default
    n = np.arange(25.0)
    pers = equirect_to_perspective(texture(512, 1024), 90, 2 * n, 0 * n, 0 * n, out_hw=(384, 512))
    poses = Poses(90.0, 2 * n, 0 * n, 0 * n)
    sigmas = edm.karras_sigmas(steps)  # SVD's scheduler: Karras σ from 700 to 0.002
    rows = []
    for blend in (False, True):
        cfg = GenerateConfig(height=512, window=25, context=5, steps=steps, blend=blend)
        wall, _ = time_window(svd, pers, poses, cfg, sigmas)
        rows.append([torch.cuda.get_device_name(), 25, "512x1024", steps, "blended" if blend else "plain", f"{wall:.1f}"])
    table("Seconds per 25-frame 512x1024 generation on a GPU (paper: about 90 s on an A6000)", header, rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="Euler steps for the tiny CPU rows (default 10)")
    p.add_argument("--gpu-steps", type=int, default=25)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--parts", default="tiny,seam,poses,gpu", help="comma-separated subset to run")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    if "tiny" in parts:
        bench_tiny(args.steps)
    if "seam" in parts:
        bench_seam()
    if "poses" in parts:
        bench_poses()
    if "gpu" in parts:
        bench_gpu(args.gpu_steps)


if __name__ == "__main__":
    main()
