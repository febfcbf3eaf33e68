#!/usr/bin/env python
"""Full-size SVD-XT on one GPU: a few stage-1 and stage-2 training steps with DeepSpeed ZeRO-2
bf16 (the stage configs' DeepSpeed JSON, optimizer offload included), then one 25-frame
512×1024 generation window. Prints s/step, peak GPU memory and s/window. Needs a CUDA GPU with
≥ 80 GB; about 5–8 minutes (the first run also builds DeepSpeed's CPU Adam, ~1–2 min).

    .venv/bin/python bench/gpu.py [--steps 3] [--sampler-steps 25] [--no-offload]

The networks are random, built from the published configs (configs/train/svd_xt/), so no
download is needed: speed and memory do not depend on the weight values. Training steps run the
trainer's own functions (`model.train.prepare_batch`, `edm_training_loss`, `deepspeed_config`)
on synthetic uint8 pairs of the stage's size (the data loader is measured by bench/data.py);
generation runs `model.generate.generate_panorama` on a synthetic perspective clip.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GiB = 2**30


def random_svd(device, dtype):
    from transformers import CLIPImageProcessor

    from model.network import SVD, build_svd_xt_random

    with torch.device(device):
        unet, vae, clip = build_svd_xt_random(torch.float32)
    vae.to(dtype).requires_grad_(False).eval()
    clip.to(dtype).requires_grad_(False).eval()
    return SVD(unet, vae, clip, CLIPImageProcessor(), REPO)


def train_steps(stage: str, steps: int, offload: bool) -> dict:
    import deepspeed
    import torch.distributed as dist

    from model import edm
    from model.config import TrainConfig
    from model.network import enable_temporal_checkpointing
    from model.train import ShardedEMA, deepspeed_config, edm_training_loss, prepare_batch, setup_distributed, \
        step_generator

    overrides = ["shards=[unused]", "train.batch_size=1", "train.micro_batch_size=1"]
    if not offload:
        overrides.append("train.deepspeed=configs/deepspeed/zero2.json")
    cfg = TrainConfig.load(REPO / "configs" / "train" / f"{stage}.yaml", overrides)
    rank, world, _, device = setup_distributed()
    torch.cuda.reset_peak_memory_stats()
    svd = random_svd(device, torch.bfloat16)
    unet = svd.unet.train()
    unet.enable_gradient_checkpointing()
    if cfg.model.temporal_checkpointing:
        enable_temporal_checkpointing(unet)
    ds = deepspeed_config(cfg, world, bf16=True)
    params = [p for p in unet.parameters() if p.requires_grad]
    o = cfg.optim
    if offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam
        optimizer = DeepSpeedCPUAdam(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    engine, *_ = deepspeed.initialize(model=unet, optimizer=optimizer, config=ds)
    ema = ShardedEMA(engine.module)
    d = cfg.data
    T, H, W = d.num_frames, d.height, d.width
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(1, T, 1, H, W, dtype=torch.bool)
    mask[..., H // 4:3 * H // 4, W // 3:2 * W // 3] = True
    batch = {"target": torch.randint(0, 256, (1, T, 3, H, W), dtype=torch.uint8, generator=g),
             "condition": torch.randint(0, 256, (1, T, 3, H, W), dtype=torch.uint8, generator=g),
             "pers": torch.randint(0, 256, (1, T, 3, d.pers_size, d.pers_size), dtype=torch.uint8, generator=g),
             "mask": mask, "context_frames": torch.tensor([d.context_frames if d.context_prob > 0 else 0])}
    lat = edm.latitude_weight(H // svd.vae_scale, W // svd.vae_scale).to(device)
    times = []
    for step in range(steps + 1):  # the first step warms up (kernels, CPU Adam build) and is not timed
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        gen = step_generator(0, step, rank, 0)
        prepared = prepare_batch(svd, batch, cfg, gen, device, torch.bfloat16)
        loss, _ = edm_training_loss(engine, prepared, cfg.edm.p_mean_start, cfg.edm.p_std, lat, gen)
        engine.backward(loss.mean())
        ema.wait()
        engine.step()
        ema.update(0.9999)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    ema.wait()
    out = {"stage": stage, "size": f"{H}×{W}×{T}", "s_per_step": float(np.mean(times[1:])),
           "first_step_s": times[0], "peak_gib": torch.cuda.max_memory_allocated() / GiB,
           "reserved_gib": torch.cuda.max_memory_reserved() / GiB, "offload": offload}
    del engine, optimizer, unet, svd, ema, prepared, loss
    torch.cuda.empty_cache()
    if dist.is_initialized():
        dist.barrier()
    return out


@torch.no_grad()
def generation_window(sampler_steps: int) -> dict:
    from model.generate import GenerateConfig, generate_panorama, scheduler_sigmas
    from model.poses import Poses

    device = torch.device("cuda")
    svd = random_svd(device, torch.bfloat16)
    svd.unet.to(torch.bfloat16).eval()
    T = 25
    rng = np.random.default_rng(0)
    pers = rng.integers(0, 256, (T, 320, 480, 3), dtype=np.uint8)
    zeros = np.zeros(T)
    poses = Poses(90.0, zeros, zeros, zeros)
    cfg = GenerateConfig(height=512, window=T, context=5, steps=sampler_steps)
    sigmas = scheduler_sigmas(REPO / "nonexistent", cfg.steps)  # SVD's scheduler settings
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    generate_panorama(svd, pers, poses, cfg, sigmas, fps_id=5.0)
    torch.cuda.synchronize()
    return {"s_per_window": time.perf_counter() - t0, "peak_gib": torch.cuda.max_memory_allocated() / GiB,
            "steps": sampler_steps, "guidance": cfg.guidance, "blend": cfg.blend}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3, help="timed training steps per stage (after one warm-up)")
    p.add_argument("--sampler-steps", type=int, default=25)
    p.add_argument("--no-offload", action="store_true", help="optimizer on the GPU (configs/deepspeed/zero2.json)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA GPU: not run", file=sys.stderr)
        sys.exit(2)
    t0 = time.perf_counter()
    rows = [train_steps(stage, args.steps, not args.no_offload) for stage in ("stage1", "stage2")]
    gen = generation_window(args.sampler_steps)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, ZeRO-2 bf16, 1 GPU, "
          f"optimizer offload {'on' if rows[0]['offload'] else 'off'}")
    print(f"{'':<28}{'s/step':>10}{'first step s':>14}{'peak alloc GiB':>16}{'peak reserved GiB':>19}")
    for r in rows:
        print(f"{r['stage'] + ' ' + r['size']:<28}{r['s_per_step']:>10.2f}{r['first_step_s']:>14.1f}"
              f"{r['peak_gib']:>16.1f}{r['reserved_gib']:>19.1f}")
    print(f"generation 512×1024×25, {gen['steps']} Euler steps, guidance {gen['guidance'][0]:g} (2 UNet passes "
          f"batched), blended decoding: {gen['s_per_window']:.1f} s/window, peak {gen['peak_gib']:.1f} GiB")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
