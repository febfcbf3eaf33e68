#!/usr/bin/env python
"""Per-rank GPU memory of a training step at SVD-XT size, for configs/train/stage1.yaml and
stage2.yaml on 8 GPUs: one table, on a CPU, in minutes, without weights.

    .venv/bin/python bench/memory.py                       # stage 1 and 2, 8 ranks, both checkpointing settings
    .venv/bin/python bench/memory.py --world 16 --configs configs/train/stage2.yaml

How each row is obtained:
- activations: the real SVD-XT UNet (configs/train/svd_xt/unet.json, 1,524,623,082 parameters) is
  built with random init under FakeTensorMode (no memory, no weights) in bf16, in training mode
  with the trainer's checkpointing settings (`model.gradient_checkpointing`,
  `model.temporal_checkpointing`), and one micro-batch (B = micro_batch_size, T frames, the
  config's latent size) runs forward and backward through `model.network.unet_fn`, the trainer's
  call. A dispatch mode counts every storage the step creates while it is alive. "kept for
  backward" is what is alive after the forward; "fwd+bwd peak" the maximum over the step, with each
  parameter gradient released once accumulated (ZeRO-2 copies it into its reduce bucket).
  Attention runs the fused (flash) kernel, as on a GPU: only the log-sum-exp is kept.
- VAE encoding: the SVD-XT VAE encoder traced the same way on one chunk of `model.vae_chunk`
  frames at the config's size (no grad); the target and the condition are encoded one after the
  other, so the peak is one chunk's.
- parameters, gradients, optimiser state: counted from the parameter count and the DeepSpeed JSON
  the config names: bf16 UNet on every rank; ZeRO-2 reduce buckets (2 × reduce_bucket_size bf16
  with overlap_comm); the fp32 master, Adam moments and fp32 gradient partition (N/world each) on
  the GPU, or on the CPU with `offload_optimizer`; the EMA (fp32, sharded like the master, on
  the master's device: model/train.py).
- VAE and CLIP weights: bf16, counted from the published configs.
Not modelled: the CUDA context and NCCL buffers (about 0.5–1 GiB) and allocator fragmentation
(the trainer sets PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True). Hence the target: ≤ 72 GiB
of an 80 GB GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import weakref
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402
from torch.utils.weak import WeakIdKeyDictionary  # noqa: E402

from model.config import TrainConfig  # noqa: E402
from model.network import build_svd_xt_random, enable_temporal_checkpointing, unet_fn  # noqa: E402

GiB = 2**30
REPO = Path(__file__).resolve().parents[1]
CONFIGS = [REPO / "configs" / "train" / "stage1.yaml", REPO / "configs" / "train" / "stage2.yaml"]
BUDGET_GIB = 72.0  # of 80 GB, leaving the CUDA context, NCCL and fragmentation their share


class LiveStorage(TorchDispatchMode):
    """Bytes of every storage created under this mode while it is alive: `live` now, `peak` ever."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen = WeakIdKeyDictionary()

    def _free(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                if st not in self._seen:
                    n = st.nbytes()
                    self._seen[st] = n
                    self.live += n
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(st, self._free, n)
        return out


def trace_unet_step(unet, batch: int, frames: int, latent_hw: tuple[int, int], dtype=torch.bfloat16) -> dict:
    """Forward + backward of one micro-batch through `unet_fn` (inside FakeTensorMode)."""
    h, w = latent_hw
    for p in unet.parameters():  # ZeRO-2 moves each gradient into its bucket once accumulated
        p.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
    x = torch.randn(batch, frames, 4, h, w, dtype=dtype)
    cond = torch.randn(batch, frames, 4, h, w, dtype=dtype)
    clip = torch.randn(batch, frames, unet.config.cross_attention_dim, dtype=dtype)
    ids = torch.randn(batch, 3, dtype=dtype)
    c_noise = torch.randn(batch)
    with LiveStorage() as mem:
        out = unet_fn(unet, cond, clip, ids)(x, c_noise)
        kept = mem.live
        loss = out.float().pow(2).mean()
        loss.backward()
        del out, loss
    return {"kept": kept, "peak": mem.peak}


@torch.no_grad()
def trace_vae_encode(vae, frames: int, hw: tuple[int, int], dtype=torch.bfloat16) -> int:
    x = torch.randn(frames, 3, *hw, dtype=dtype)
    with LiveStorage() as mem:
        vae.encode(x).latent_dist.mode()
    return mem.peak


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def estimate(config: str | Path, world: int = 8, temporal: bool | None = None, overrides: tuple = ()) -> dict:
    """The per-rank memory (bytes) of one training step of `config` on `world` GPUs; `temporal`
    overrides model.temporal_checkpointing."""
    cfg = TrainConfig.load(config, [*overrides, "shards=[unused]"])
    if temporal is not None:
        cfg.model.temporal_checkpointing = temporal
    ds = json.loads((REPO / cfg.train.deepspeed).read_text()) if not Path(cfg.train.deepspeed).is_absolute() \
        else json.loads(Path(cfg.train.deepspeed).read_text())
    zero = ds.get("zero_optimization", {})
    offload = zero.get("offload_optimizer", {}).get("device") == "cpu"
    bucket = int(zero.get("reduce_bucket_size", 5e8)) * (2 if zero.get("overlap_comm") else 1)
    d = cfg.data
    B, T = cfg.train.micro_batch_size, d.num_frames
    with FakeTensorMode():
        unet, vae, clip = build_svd_xt_random(torch.bfloat16)
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        unet.train()
        if cfg.model.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
            if cfg.model.temporal_checkpointing:
                enable_temporal_checkpointing(unet)
        t0 = time.perf_counter()
        act = trace_unet_step(unet, B, T, (d.height // scale, d.width // scale))
        vae_peak = trace_vae_encode(vae, min(cfg.model.vae_chunk, B * T), (d.height, d.width))
        seconds = time.perf_counter() - t0
        n, n_vae, n_clip = numel(unet), numel(vae), numel(clip)
    shard = n / world
    on_gpu = 0 if offload else 1
    rows = {
        "UNet weights (bf16)": 2 * n,
        "ZeRO-2 reduce buckets (bf16)": 2 * bucket,
        "fp32 master + Adam m, v (N/world)": on_gpu * 12 * shard,
        "fp32 gradient partition (N/world)": on_gpu * 4 * shard,
        "EMA fp32 (N/world, beside the master)": on_gpu * 4 * shard,
        "VAE + CLIP weights (bf16)": 2 * (n_vae + n_clip),
        "activations kept for backward": act["kept"],
        "step peak over static (fwd+bwd | VAE encode)": max(act["peak"], vae_peak),
    }
    static = sum(v for k, v in rows.items() if k not in ("activations kept for backward",
                                                        "step peak over static (fwd+bwd | VAE encode)"))
    return {
        "config": str(config), "world": world, "offload": offload, "temporal": cfg.model.temporal_checkpointing,
        "gradient_checkpointing": cfg.model.gradient_checkpointing, "size": f"{d.height}×{d.width}×{T}",
        "params": n, "rows": rows, "vae_encode_peak": vae_peak, "unet_peak": act["peak"],
        "total": static + rows["step peak over static (fwd+bwd | VAE encode)"],
        "cpu_per_rank": (1 - on_gpu) * 20 * shard,  # master, m, v, grad partition, EMA on the host
        "trace_s": seconds,
    }


def table(results: list[dict]) -> str:
    heads = [f"{Path(r['config']).stem} {r['size']}\ntemporal ckpt {'on' if r['temporal'] else 'off'}"
             for r in results]
    lines = [f"{'per rank, GiB (' + str(results[0]['world']) + ' GPUs, micro-batch 1)':<48}"
             + "".join(f"{h.splitlines()[0]:>24}" for h in heads),
             f"{'':<48}" + "".join(f"{h.splitlines()[1]:>24}" for h in heads)]
    for key in results[0]["rows"]:
        lines.append(f"{key:<48}" + "".join(f"{r['rows'][key] / GiB:>24.2f}" for r in results))
    lines.append(f"{'  of which: UNet fwd+bwd peak / VAE encode peak':<48}"
                 + "".join(f"{r['unet_peak'] / GiB:>14.2f} / {r['vae_encode_peak'] / GiB:<7.2f}" for r in results))
    lines.append(f"{'total GPU per rank':<48}" + "".join(f"{r['total'] / GiB:>24.2f}" for r in results))
    lines.append(f"{'  fits 80 GB (≤ ' + str(BUDGET_GIB) + ' GiB modelled)':<48}"
                 + "".join(f"{'yes' if r['total'] / GiB <= BUDGET_GIB else 'NO':>24}" for r in results))
    lines.append(f"{'host memory per rank (optimizer offload + EMA)':<48}"
                 + "".join(f"{r['cpu_per_rank'] / GiB:>24.2f}" for r in results))
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=[str(c) for c in CONFIGS])
    p.add_argument("--world", type=int, default=8)
    p.add_argument("--temporal", choices=["on", "off", "both"], default="both",
                   help="temporal-block checkpointing (model.temporal_checkpointing)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    settings = {"on": [True], "off": [False], "both": [True, False]}[args.temporal]
    results = [estimate(c, args.world, t) for c in args.configs for t in settings]
    print(f"SVD-XT UNet {results[0]['params']:,} parameters (configs/train/svd_xt), bf16, traced under "
          f"FakeTensorMode; torch {torch.__version__}")
    print(table(results))
    print(f"\n{time.perf_counter() - t0:.0f} s on {os.cpu_count()} CPU cores, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
