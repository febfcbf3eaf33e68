"""Fit the tiny SVD's VAE on frames of the training shards (the CPU demo's first phase).

    python -m model.fit_vae --config configs/train/demo.yaml --shards out/demo/curate/shards \
        --out out/demo/svd [--steps 300] [--lr 2e-3] [--threads 1]

A random VAE decodes even a perfect latent to noise, so a tiny UNet trained on top of it can
learn nothing a person sees. This writes a tiny SVD directory in diffusers layout
(`model.network.build_tiny_svd`: random UNet, random tiny CLIP) whose `vae/` is an
`AutoencoderKLTemporalDecoder` trained briefly on windows of T consecutive frames of the
training clips (at the train config's equirect size, random circular shifts, and now and then a
black region like the condition canvas has outside its mask). `--canvas-weight` adds a term that
keeps the latents local: a canvas (the frame black outside a random window, as the condition
canvas is outside the input's directions) must encode, inside the window, to the frame's own
latents; without it the mostly-black canvas shifts every latent (the encoder's GroupNorm
statistics and mid-block attention span the whole frame). Off by default: docs/training.md gives
what it measured to do. Its `scaling_factor` is set to
1 / std of the latents, so x0 has σ_data ≈ 1 as EDM assumes. Point the train config's
`model.pretrained` at the directory: the trainer then fine-tunes its UNet like SVD-XT's, and
the directory's own random UNet is the "untrained" model of the demo's evaluation.

Prints and writes OUT/vae_fit.json: reconstruction PSNR (dB) of every training clip's frames, and
the canvas latent error inside the window against the latents' own variance.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger("model.fit_vae")


def load_clips(urls: Sequence[str], height: int, width: int) -> list[np.ndarray]:
    """Every frame of every clip in the shards, at height×width: a list of (N, H, W, 3) uint8."""
    from shards.reader import iter_samples, list_shards
    from shards.video import decode_frames

    clips = []
    for sample in iter_samples(list_shards(list(urls)), strict=False):
        try:
            clips.append(decode_frames(sample.mp4, size=(width, height)))
        except ValueError as e:  # one bad clip must not stop the fit
            log.warning("skipping %s: %s", sample.key, e)
    if not clips:
        raise ValueError(f"--shards {list(urls)}: no decodable clip")
    return clips


def random_box(height: int, width: int, h_range: tuple[int, int], w_range: tuple[int, int],
               rng: np.random.Generator) -> tuple[slice, slice]:
    """(rows, columns) of a random box inside height×width, its size drawn from [low, high) ranges."""
    h, w = int(rng.integers(*h_range)), int(rng.integers(*w_range))
    y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return slice(y, y + h), slice(x, x + w)


def sample_windows(clips: list[np.ndarray], n: int, T: int, rng: np.random.Generator,
                   black_prob: float = 0.3) -> torch.Tensor:
    """n windows of T consecutive frames (B·T, 3, H, W) in [−1, 1], each circularly shifted by a
    random amount and, with probability black_prob, with a random black box (canvas-like edges)."""
    from model.frames import to_signed_unit

    out = []
    for _ in range(n):
        clip = clips[int(rng.integers(len(clips)))]
        start = int(rng.integers(0, max(1, len(clip) - T + 1)))
        frames = clip[start:start + T]
        if len(frames) < T:
            frames = np.concatenate([frames, np.repeat(frames[-1:], T - len(frames), 0)])
        frames = np.roll(frames, int(rng.integers(frames.shape[2])), axis=2)
        if rng.random() < black_prob:
            H, W = frames.shape[1:3]
            frames = frames.copy()
            frames[(slice(None), *random_box(H, W, (H // 4, H), (W // 8, W // 2), rng))] = 0
        out.append(to_signed_unit(frames))
    return torch.cat(out)


def window_masks(n: int, height: int, width: int, rng: np.random.Generator) -> torch.Tensor:
    """(n, 1, H, W) float: one random visible window per frame (¼–¾ of the height, ⅛–⅓ of the
    width, like a perspective input's footprint on the demo's canvas), 1 inside."""
    m = torch.zeros(n, 1, height, width)
    for i in range(n):
        m[(i, 0, *random_box(height, width, (height // 4, height * 3 // 4), (width // 8, width // 3), rng))] = 1
    return m


def latents_inside(mask: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """(n, 1, h, w) bool at the latents' size: the latent pixels wholly inside the window `mask`."""
    return F.avg_pool2d(mask, mask.shape[-1] // latents.shape[-1]) > 0.99


def canvas_latent_error(vae, frames: torch.Tensor, mask: torch.Tensor, target_latents: torch.Tensor) -> torch.Tensor:
    """Mean squared distance, inside the window, between the latents (posterior means) of the
    canvas (`frames` black outside `mask`, as `model.data` builds the condition) and
    `target_latents`, the frame's own. Only latent pixels wholly inside the window count."""
    canvas = frames * mask - (1 - mask)
    z = vae.encode(canvas).latent_dist.mean
    inside = latents_inside(mask, z).to(z.dtype)
    return ((z - target_latents).pow(2) * inside).sum() / (inside.sum() * z.shape[1]).clamp_min(1)


def reconstruct(vae, frames: torch.Tensor, T: int) -> torch.Tensor:
    """(B·T, 3, H, W) → the VAE round trip through the latent mode (decoded T frames at a time)."""
    z = vae.encode(frames).latent_dist.mode()
    return torch.cat([vae.decode(z[i:i + T], num_frames=len(z[i:i + T])).sample for i in range(0, len(z), T)])


@torch.no_grad()
def clip_psnr(vae, clips: list[np.ndarray], T: int) -> list[float]:
    """Reconstruction PSNR (dB, pixels in [0, 1]) of each clip's frames, in windows of T."""
    from model.frames import to_signed_unit

    vae.eval()
    out = []
    for clip in clips:
        x = to_signed_unit(clip)
        n = (len(x) // T) * T or len(x)
        y = reconstruct(vae, x[:n], T).clamp(-1, 1)
        mse = float(((y - x[:n]) / 2).pow(2).mean())
        out.append(10 * math.log10(1 / max(mse, 1e-12)))
    return out


@torch.no_grad()
def canvas_check(vae, clips: list[np.ndarray], rng: np.random.Generator, T: int) -> tuple[float, float]:
    """(canvas latent error inside the window, variance of the frame latents there) on 8 windows."""
    x = sample_windows(clips, 8, T, rng, black_prob=0.0)
    mask = window_masks(len(x), x.shape[-2], x.shape[-1], rng)
    z = vae.encode(x).latent_dist.mean
    return float(canvas_latent_error(vae, x, mask, z)), float(z[latents_inside(mask, z).expand_as(z)].var())


@torch.no_grad()
def latent_std(vae, clips: list[np.ndarray], rng: np.random.Generator, T: int) -> float:
    z = vae.encode(sample_windows(clips, 4, T, rng, black_prob=0.0)).latent_dist.mode()
    return float(z.std())


def fit_vae(vae, clips: list[np.ndarray], steps: int, lr: float, T: int, batch_clips: int = 2,
            kl_weight: float = 1e-6, canvas_weight: float = 0.0, seed: int = 0, log_every: int = 50) -> list[float]:
    """Train encoder and decoder: L1 + MSE on the reconstruction of a posterior sample, a small
    KL term that keeps the latents bounded, and `canvas_weight` × `canvas_latent_error` towards
    the frames' own (fixed) latents. Returns the loss per step."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    vae.train().requires_grad_(True)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        x = sample_windows(clips, batch_clips, T, rng)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        y = torch.cat([vae.decode(z[i:i + T], num_frames=T).sample for i in range(0, len(z), T)])
        loss = F.l1_loss(y, x) + F.mse_loss(y, x) + kl_weight * posterior.kl().mean()
        if canvas_weight > 0:
            mask = window_masks(len(x), x.shape[-2], x.shape[-1], rng)
            loss = loss + canvas_weight * canvas_latent_error(vae, x, mask, posterior.mean.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            log.info("vae step %d/%d loss %.4f (%.1f s)", step + 1, steps, np.mean(losses[-log_every:]),
                     time.perf_counter() - t0)
    vae.eval().requires_grad_(False)
    return losses


def build_fitted_svd(config_path: str | Path, urls: Sequence[str], out: str | Path, steps: int, lr: float,
                     seed: int = 0, canvas_weight: float = 0.0) -> dict:
    """Write a tiny SVD (random UNet and CLIP) with a fitted VAE to `out`; returns the report."""
    from diffusers import AutoencoderKLTemporalDecoder

    from model.config import TrainConfig
    from model.network import build_tiny_svd

    cfg = TrainConfig.load(config_path, [f"shards={json.dumps([str(u) for u in urls])}"])
    m, d = cfg.model, cfg.data
    out = Path(out)
    t0 = time.perf_counter()
    clips = load_clips(urls, d.height, d.width)
    log.info("fitting the VAE on %d clips (%d frames at %d×%d)", len(clips), sum(map(len, clips)), d.width, d.height)
    build_tiny_svd(out, block_out_channels=tuple(m.tiny_block_out_channels),
                   cross_attention_dim=m.tiny_cross_attention_dim, num_frames=d.num_frames,
                   vae_block_out_channels=tuple(m.tiny_vae_block_out_channels), seed=seed)
    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder.from_pretrained(out, subfolder="vae")
    psnr_before = clip_psnr(vae, clips, d.num_frames)
    canvas_before = canvas_check(vae, clips, np.random.default_rng(seed + 2), d.num_frames)
    losses = fit_vae(vae, clips, steps, lr, d.num_frames, canvas_weight=canvas_weight, seed=seed)
    std = latent_std(vae, clips, np.random.default_rng(seed + 1), d.num_frames)
    canvas_error, latent_var = canvas_check(vae, clips, np.random.default_rng(seed + 2), d.num_frames)
    vae.register_to_config(scaling_factor=1.0 / std)  # x0 = latents · scaling_factor has std ≈ 1
    vae.save_pretrained(out / "vae")
    psnr_after = clip_psnr(vae, clips, d.num_frames)
    report = {"clips": len(clips), "frames": int(sum(map(len, clips))), "size": [d.height, d.width],
              "steps": steps, "lr": lr, "final_loss": float(np.mean(losses[-20:])),
              "scaling_factor": 1.0 / std, "psnr_random_db": float(np.mean(psnr_before)),
              "psnr_db": float(np.mean(psnr_after)), "psnr_per_clip_db": [round(p, 2) for p in psnr_after],
              "canvas_weight": canvas_weight, "canvas_latent_error": canvas_error, "latent_var": latent_var,
              "canvas_latent_error_random": canvas_before[0], "latent_var_random": canvas_before[1],
              "seconds": round(time.perf_counter() - t0, 1)}
    (out / "vae_fit.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model.fit_vae", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="train config: its data: size / frames and model: tiny sizes")
    p.add_argument("--shards", nargs="+", required=True, help="training shards: files, directories or globs")
    p.add_argument("--out", required=True, help="SVD directory to write (diffusers layout)")
    p.add_argument("--steps", type=int, default=200, help="optimiser steps (default 200)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle schedule)")
    p.add_argument("--canvas-weight", type=float, default=0.0,
                   help="weight of the canvas term: a canvas encodes, inside its window, to the frame's latents "
                        "(default 0: off; 0.1 makes the canvas latents local)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy machine)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.steps < 1 or not 0 < args.lr < math.inf or not 0 <= args.canvas_weight < math.inf:
            raise ValueError(f"--steps must be ≥ 1, --lr finite > 0 and --canvas-weight finite ≥ 0, got {args.steps}, {args.lr} "
                             f"and {args.canvas_weight}")
        report = build_fitted_svd(args.config, args.shards, args.out, args.steps, args.lr, args.seed,
                                  args.canvas_weight)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"VAE fitted on {report['clips']} clips ({report['frames']} frames, {report['size'][1]}×{report['size'][0]}): "
          f"reconstruction PSNR {report['psnr_db']:.2f} dB (random VAE {report['psnr_random_db']:.2f} dB), "
          f"canvas latent error inside the window {report['canvas_latent_error']:.3f} (latent variance "
          f"{report['latent_var']:.3f}), scaling_factor {report['scaling_factor']:.3f}, {report['seconds']} s → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
