#!/usr/bin/env python
"""Training-step throughput and peak memory of the conditioned SVD UNet.

    .venv/bin/python bench/train.py            # tiny rows on the CPU, one subprocess per row
    .venv/bin/python bench/train.py --steps 5

One step = EDM loss (eq. 1 with eq. 2 preconditioning) → backward → AdamW on pre-encoded
latents (data loading, VAE and CLIP excluded: they are measured with model.data / frozen).
Peak memory: the process's max RSS (CPU) or torch.cuda.max_memory_allocated (GPU), each row in
a fresh subprocess so rows do not share a peak. Full-size rows need a GPU and SVD-XT weights.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROWS = [  # name, UNet block_out_channels, T, latent h, latent w, batch, gradient checkpointing
    ("tiny T=4 8x16", (32, 64), 4, 8, 16, 1, False),
    ("tiny T=8 16x32", (32, 64), 8, 16, 32, 1, False),
    ("tiny T=8 16x32 +ckpt", (32, 64), 8, 16, 32, 1, True),
    ("tiny T=8 16x32 B=2", (32, 64), 8, 16, 32, 2, False),
]
FULL_ROWS = ["SVD-XT stage 1 T=25 48x96 (384x768)", "SVD-XT stage 2 T=25 64x128 (512x1024)"]


def run_row(blocks, T, h, w, batch, ckpt, steps) -> dict:
    import torch

    from model import edm
    from model.network import added_time_ids, build_tiny_svd, load_svd, unet_fn

    with tempfile.TemporaryDirectory() as tmp:
        svd = load_svd(build_tiny_svd(Path(tmp) / "svd", block_out_channels=blocks, num_frames=T))
    unet = svd.unet.train()
    if ckpt:
        unet.enable_gradient_checkpointing()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, T, 4, h, w, generator=g)
    cond = torch.randn(batch, T, 4, h, w, generator=g)
    clip = torch.randn(batch, T, unet.config.cross_attention_dim, generator=g)
    ids = added_time_ids(torch.full((batch,), 0.05), 5.0)
    lat = edm.latitude_weight(h, w)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)

    def step():
        sigma = edm.sample_sigma(batch, -1.0, 1.0, g)
        y = x0 + edm.append_dims(sigma, 5) * torch.randn(x0.shape, generator=g)
        loss = edm.edm_loss(edm.denoise(unet_fn(unet, cond, clip, ids), y, sigma), x0, sigma, lat).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up (allocator, first-call overheads)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t0
    return {"params_M": sum(p.numel() for p in unet.parameters()) / 1e6, "steps_per_s": steps / dt,
            "s_per_step": dt / steps, "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="timed steps per row (after one warm-up)")
    p.add_argument("--row", type=int, default=None, help=argparse.SUPPRESS)  # internal: one row, JSON out
    args = p.parse_args()
    if args.row is not None:
        _, blocks, T, h, w, b, ckpt = ROWS[args.row]
        print(json.dumps(run_row(blocks, T, h, w, b, ckpt, args.steps)))
        return

    from tqdm import tqdm

    import torch
    print(f"bench/train.py: CPU, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.steps} timed steps per row")
    header = f"{'row':<38} {'params':>8} {'steps/s':>8} {'s/step':>8} {'peak RSS':>10}"
    lines = [header, "-" * len(header)]
    for i in tqdm(range(len(ROWS)), desc="rows"):
        r = subprocess.run([sys.executable, __file__, "--row", str(i), "--steps", str(args.steps)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            lines.append(f"{ROWS[i][0]:<38} failed: {r.stderr.strip().splitlines()[-1]}")
            continue
        m = json.loads(r.stdout.strip().splitlines()[-1])
        lines.append(f"{ROWS[i][0]:<38} {m['params_M']:>7.2f}M {m['steps_per_s']:>8.3f} {m['s_per_step']:>8.2f} "
                     f"{m['peak_rss_MiB']:>7.0f} MiB")
    gpu = torch.cuda.is_available()
    for name in FULL_ROWS:
        why = "needs SVD-XT weights on disk (run the trainer)" if gpu else \
            "not measured: no GPU machine was lent to this session"
        lines.append(f"{name:<38} {why}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
