#!/usr/bin/env python
"""Fine-tune Stable Video Diffusion into a perspective → 360° video model (paper §3.2, supp. §3.2).

    deepspeed model/train.py --config configs/train/stage1.yaml [key=value …]   # GPU nodes
    python model/train.py --config configs/train/tiny.yaml run_dir=out/x          # one process, CPU ok
    torchrun --nproc_per_node 2 model/train.py --config configs/train/tiny.yaml   # 2 CPU ranks (gloo)
    … --resume latest   # continue step, data position, EMA, optimiser and lr schedule

`main` reads as its phases, each a function below it: config and input checks → `start_run`
(distributed set-up, run directory) → `build_model` → `build_engine` (DeepSpeed) → `resume` →
`build_data` → the loop, written out in `main` (batch → EDM loss → step → EMA, then `log_window` /
`write_checkpoint` / `validate_ema`) → `save_final` (the UNet's `save_pretrained`).
Every random draw of step k on rank r comes from a generator seeded by (seed, k, r, micro-step),
so a resumed run takes exactly the draws the uninterrupted run would have taken.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from model import edm
from model.config import TrainConfig
from model.data import PairDataset, pack_for_loader, unpack_batch
from model.frames import signed_unit, to_uint8
from model.network import (SVD, added_time_ids, build_tiny_svd, check_svd_dir, check_unet_dir, clip_embeddings,
                           condition_noise_mask, drop_conditions, enable_temporal_checkpointing, encode_target,
                           load_svd, noisy_condition, sample_sigma_cond, unet_fn, vae_decode, vae_encode)
from shards.reader import PipeRefused, list_shards

log = logging.getLogger("model.train")
CKPT_DIR = "checkpoints"


# ------------------------------------------------------------------------------ small pure helpers
def step_generator(*seed_parts: int) -> torch.Generator:
    """A CPU generator for one (seed, step, rank, micro-step): resumable by construction."""
    state = np.random.SeedSequence([int(s) for s in seed_parts]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def warmup_lambda(warmup_steps: int):
    """Linear warm-up to the base lr, then constant (the paper's lr 1e-5 is constant)."""
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay warmed up as min(decay, (1 + k)/(10 + k)) so early averages are not the init."""
    return min(decay, (1 + step) / (10 + step))


def master_fragments(module: torch.nn.Module) -> dict[str, tuple[int, torch.Tensor]]:
    """This rank's part of the fp32 master weights, by parameter name: (start in the flattened
    parameter, fp32 view). Under ZeRO-1/2 that is the slice of the rank's optimizer partition
    (on the CPU with optimizer offload); without ZeRO, the whole (fp32) parameter."""
    out = {}
    for name, p in module.named_parameters():
        if hasattr(p, "_hp_mapping"):
            m = p._hp_mapping  # DeepSpeed's link from the bf16 parameter to its fp32 fragment
            if m is not None:
                out[name] = (m.lp_fragment_address.start, m.hp_fragment)
        else:
            out[name] = (0, p.detach().view(-1))
    return out


class ShardedEMA:
    """fp32 EMA of the master weights, sharded like them: each rank averages its own fragments,
    on the device they live on (the CPU with optimizer offload, so nothing on the GPU), in a
    background thread that overlaps the next forward/backward; `wait()` before the optimizer
    changes the master again."""

    def __init__(self, module: torch.nn.Module, full: dict[str, torch.Tensor] | None = None):
        from concurrent.futures import ThreadPoolExecutor

        self.module = module
        self.shadow: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, (start, frag) in master_fragments(module).items():
                src = frag if full is None else full[name].reshape(-1)[start:start + frag.numel()]
                self.shadow[name] = src.detach().to(frag.device, torch.float32, copy=True)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ema")
        self._pending = None

    @torch.no_grad()
    def _update(self, decay: float) -> None:
        for name, (_, frag) in master_fragments(self.module).items():
            self.shadow[name].lerp_(frag.float(), 1.0 - decay)

    def update(self, decay: float) -> None:
        self.wait()
        self._pending = self._pool.submit(self._update, decay)

    def wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def full(self, device) -> dict[str, torch.Tensor] | None:
        self.wait()
        return gather_full(self.module, self.shadow, device)


def gather_full(module: torch.nn.Module, shards: dict[str, torch.Tensor] | None, device
                ) -> dict[str, torch.Tensor] | None:
    """Whole fp32 tensors on rank 0's CPU from every rank's fragments (`shards`, by name, placed
    as in `master_fragments`; None = the master itself); None on the other ranks. Collective."""
    frags = master_fragments(module)
    rank = dist.get_rank() if dist.is_initialized() else 0
    out = {}
    for name, p in module.named_parameters():
        buf = torch.zeros(p.numel(), dtype=torch.float32, device=device)
        if name in frags:
            start, frag = frags[name]
            src = frag if shards is None else shards[name]
            buf[start:start + src.numel()].copy_(src)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.reduce(buf, dst=0)  # fragments are disjoint: the sum is the whole tensor
        if rank == 0:
            out[name] = buf.reshape(p.shape).cpu()
    return out if rank == 0 else None


def save_unet_fp32(module: torch.nn.Module, weights: dict[str, torch.Tensor], out: Path) -> None:
    """`save_pretrained` of `module`'s architecture holding exactly `weights` (fp32), without
    touching the (bf16) training module."""
    with torch.device("meta"):
        copy = type(module).from_config(module.config)
    copy.load_state_dict(weights, strict=True, assign=True)
    copy.save_pretrained(out)


@torch.no_grad()
def swap_in(module: torch.nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy `weights` into the module's parameters; return the previous values (on CPU)."""
    old = {}
    for name, p in module.named_parameters():
        if name in weights:
            old[name] = p.detach().to("cpu", copy=True)
            p.copy_(weights[name].to(p.device, p.dtype))
    return old


# ----------------------------------------------------------------------------------------- data
class ResumableStream(IterableDataset):
    """`PairDataset`'s stream, started at recorded positions and tagging each pair with where it
    came from (global worker, epoch, index in that worker's shuffled epoch), so the trainer can
    record the data position in checkpoints and resume without decoding the skipped clips."""

    def __init__(self, dataset: PairDataset, start: dict[int, tuple[int, int]] | None = None):
        self.dataset, self.start = dataset, dict(start or {})

    def __iter__(self) -> Iterator[dict[str, Any]]:
        ds = self.dataset
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        worker = ds.rank * nw + wid
        epoch, skip = self.start.get(worker, (ds.epoch, 0))
        while True:
            yielded = 0
            samples = ds.epoch_samples(epoch)
            if isinstance(samples, tuple):  # (samples, reader) in newer model.data
                samples = samples[0]
            for index, sample in enumerate(samples):
                if index < skip:
                    continue
                try:
                    pair = ds.pair_from_sample(sample, epoch)
                except Exception as e:  # a bad clip must not stop training: skip and log
                    log.warning("skipping sample %s (%s: %s)", sample.key, type(e).__name__, e)
                    continue
                pair.update(worker=worker, epoch=epoch, index=index)
                yielded += 1
                yield pack_for_loader(pair)  # uint8 pixels, mask bits: small in shared memory
            if yielded == 0 and skip == 0:
                raise RuntimeError(f"worker {worker}: no usable training clip in epoch {epoch} of {ds.shards}")
            epoch, skip = epoch + 1, 0


def record_positions(positions: dict[int, tuple[int, int]], batch: dict) -> None:
    for w, e, i in zip(batch["worker"].tolist(), batch["epoch"].tolist(), batch["index"].tolist()):
        positions[int(w)] = (int(e), int(i) + 1)


# ----------------------------------------------------------------------------------------- loss
def condition_pixels(batch: dict, cfg: TrainConfig, gen: torch.Generator, device
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The canvas the VAE encodes, σ_cond·ε added inside the mask only and context frames left
    clean (authors' code), and σ_cond (B,) ~ logN(mean, std)."""
    canvas = signed_unit(batch["condition"].to(device))
    sigma_cond = sample_sigma_cond(len(canvas), cfg.edm.sigma_cond_mean, cfg.edm.sigma_cond_std, gen)
    noise_mask = condition_noise_mask(batch["mask"].to(device), batch["context_frames"])
    return noisy_condition(canvas, sigma_cond.to(device), noise_mask, gen), sigma_cond


def prepare_batch(svd: SVD, batch: dict, cfg: TrainConfig, gen: torch.Generator, device, dtype
                  ) -> dict[str, torch.Tensor]:
    """Pair tensors (uint8) → x0 latents, (dropped-out) condition latents, CLIP tokens, added time ids."""
    chunk = cfg.model.vae_chunk
    x0 = encode_target(svd.vae, signed_unit(batch["target"].to(device)), chunk=chunk)
    noisy, sigma_cond = condition_pixels(batch, cfg, gen, device)
    cond = vae_encode(svd.vae, noisy, chunk=chunk)
    del noisy
    clip = clip_embeddings(svd.image_encoder, svd.feature_extractor, signed_unit(batch["pers"].to(device)))
    clip, cond, _ = drop_conditions(clip, cond, cfg.edm.cond_dropout, gen)
    ids = added_time_ids(sigma_cond, cfg.fps_id, cfg.edm.motion_bucket_id)
    return {"x0": x0, "cond": cond.to(dtype), "clip": clip.to(dtype), "ids": ids.to(device, dtype)}


def edm_training_loss(unet, prepared: dict, p_mean: float, p_std: float, lat_weight: torch.Tensor,
                      gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper eq. 1 in EDM form: y = x0 + σε, ln σ ~ N(P_mean, P_std²), per-sample loss
    (σ²+1)/σ² · mean_pixels λ(h)·(f_θ(y; σ) − x0)². Returns (loss (B,), σ (B,))."""
    x0 = prepared["x0"]
    sigma = edm.sample_sigma(len(x0), p_mean, p_std, gen).to(x0.device)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    y = x0 + edm.append_dims(sigma, x0.ndim) * noise
    F_theta = unet_fn(unet, prepared["cond"], prepared["clip"], prepared["ids"])
    denoised = edm.denoise(F_theta, y, sigma)
    return edm.edm_loss(denoised, x0, sigma, lat_weight), sigma


# ----------------------------------------------------------------------------------- validation
@torch.no_grad()
def generate(unet, svd: SVD, pair: dict, cfg: TrainConfig, device, dtype, seed: int) -> torch.Tensor:
    """A minimal 360° sample for monitoring: EDM Euler with per-frame guidance from
    train.val_guidance ([first, last]; constant by default, as the authors sample)."""
    gen = torch.Generator().manual_seed(seed)
    one = {k: (v[None] if torch.is_tensor(v) else v) for k, v in pair.items()}
    one["context_frames"] = torch.tensor([pair.get("context_frames", 0)])
    sigma_cond = torch.full((1,), 0.02)  # SVD's default noise_aug_strength at inference
    canvas = signed_unit(one["condition"].to(device))
    noise_mask = condition_noise_mask(one["mask"].to(device), one["context_frames"])
    cond = vae_encode(svd.vae, noisy_condition(canvas, sigma_cond.to(device), noise_mask, gen),
                      chunk=cfg.model.vae_chunk).to(dtype)
    clip = clip_embeddings(svd.image_encoder, svd.feature_extractor, signed_unit(one["pers"].to(device))).to(dtype)
    ids = added_time_ids(sigma_cond, cfg.fps_id, cfg.edm.motion_bucket_id).to(device, dtype)
    T = cond.shape[1]
    g_min, g_max = cfg.train.val_guidance
    guidance = torch.linspace(g_min, g_max, T, device=device).reshape(1, T, 1, 1, 1)
    f_cond = unet_fn(unet, cond, clip, ids)
    f_uncond = unet_fn(unet, torch.zeros_like(cond), torch.zeros_like(clip), ids)

    def D(x, sigma):
        d_c = edm.denoise(f_cond, x, sigma)
        if g_max == 1.0 and g_min == 1.0:
            return d_c
        d_u = edm.denoise(f_uncond, x, sigma)
        return d_u + guidance * (d_c - d_u)

    noise = torch.randn(cond.shape, generator=gen).to(device)
    sigmas = edm.karras_sigmas(cfg.train.val_sampler_steps)
    latents = edm.sample_euler(D, noise, sigmas)
    return vae_decode(svd.vae, latents)[0]  # (T, 3, H, W) in [-1, 1]


def contact_sheet(rows: Sequence[np.ndarray], columns: int = 4) -> np.ndarray:
    """Rows of (T, H, W, 3) videos → one image with `columns` evenly spaced frames per row."""
    T = rows[0].shape[0]
    idx = np.linspace(0, T - 1, min(columns, T)).round().astype(int)
    pad = lambda im: np.pad(im, ((2, 2), (2, 2), (0, 0)), constant_values=255)
    return np.concatenate([np.concatenate([pad(r[i]) for i in idx], axis=1) for r in rows], axis=0)


def validate(unet, svd: SVD, val_pairs: list[dict], cfg: TrainConfig, step: int, device, dtype,
             writer=None) -> list[Path]:
    """Write, per held-out clip, the generated equirect mp4 and a contact sheet
    (rows: condition canvas, generated, ground truth) under run_dir/val/step_XXXXXXXX/."""
    import cv2
    from shards.video import write_mp4

    out = Path(cfg.run_dir) / "val" / f"step_{step:08d}"
    written = []
    for i, pair in enumerate(val_pairs):
        video = to_uint8(generate(unet, svd, pair, cfg, device, dtype, seed=cfg.seed + i))
        fps = cfg.fps_id
        written.append(write_mp4(out / f"{i:02d}_{pair['key']}.mp4", video, fps=fps))
        sheet = contact_sheet([to_uint8(pair["condition"]), video, to_uint8(pair["target"])])
        png = out / f"{i:02d}_{pair['key']}.png"
        cv2.imwrite(str(png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        written.append(png)
        if writer is not None:
            writer.add_image(f"val/{i:02d}", sheet, step, dataformats="HWC")
    return written


# ---------------------------------------------------------------------------------- checkpoints
def save_checkpoint(engine, ema, ckpt_dir: Path, step: int, client_state: dict, keep_last: int,
                    rank: int) -> Path:
    """DeepSpeed checkpoint on every rank (gating on rank 0 hangs), EMA beside it, keep the last K."""
    tag = f"step_{step:08d}"
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client_state)
    if rank == 0 and ema is not None:
        torch.save(ema, ckpt_dir / tag / "ema.pt")
    if dist.is_initialized():
        dist.barrier()
    if rank == 0:
        for old in checkpoints_to_prune(ckpt_dir, keep_last, just_written=tag):
            shutil.rmtree(old, ignore_errors=True)
    return ckpt_dir / tag


def check_resume_world(ckpt_dir: Path, tag: str | None, world: int) -> None:
    """Refuse, before anything is loaded, to resume a ZeRO checkpoint with another world size:
    each rank's optimizer partition is loaded as it was saved (no elastic checkpoint), so another
    layout cannot take it."""
    if tag is None:
        return
    saved = len(list((ckpt_dir / tag).glob("zero_pp_rank_*_optim_states.pt")))
    if saved and saved != world:
        raise ValueError(f"--resume {ckpt_dir / tag}: saved by {saved} rank(s), this run has {world}: resuming "
                         f"with another world size is not supported (ZeRO-2 optimizer partitions are per rank); "
                         f"resume with {saved} ranks, or start a new run from its weights (model.unet=…)")
def checkpoint_step(path: Path) -> int | None:
    """The step of a `step_XXXXXXXX` checkpoint directory (None for anything else)."""
    name = path.name
    return int(name[5:]) if name.startswith("step_") and name[5:].isdigit() else None


def checkpoints_to_prune(ckpt_dir: Path, keep_last: int, just_written: str) -> list[Path]:
    """Checkpoints beyond keep_last: the one just written is always kept (after a resume from an
    older tag it is not the newest by step), then the newest others by step number (not by name:
    step_100000000 sorts before step_99999999)."""
    tags = [p for p in ckpt_dir.glob("step_*") if p.is_dir() and checkpoint_step(p) is not None]
    others = sorted((p for p in tags if p.name != just_written), key=checkpoint_step, reverse=True)
    return others[max(0, keep_last - 1):]


def check_run_dir(run_dir: Path, resume: str | None, overwrite: bool) -> list[Path]:
    """A run directory that already holds a run needs --resume or --overwrite (else its checkpoints,
    unet/ and config.yaml would be overwritten). Returns what --overwrite will remove."""
    ckpt_dir = run_dir / CKPT_DIR
    found = sorted(p for p in ckpt_dir.glob("step_*") if p.is_dir()) if ckpt_dir.is_dir() else []
    found += [p for p in (ckpt_dir / "latest", run_dir / "unet", run_dir / "unet_raw") if p.exists()]
    if not found or resume not in (None, "", "none"):
        return []
    if not overwrite:
        raise ValueError(f"run_dir {run_dir} already holds a run ({', '.join(p.name for p in found[:3])}"
                         f"{', …' if len(found) > 3 else ''}): pass --resume latest to continue it, "
                         f"or --overwrite to delete it and start over")
    return [p for p in (ckpt_dir, run_dir / "unet", run_dir / "unet_raw") if p.exists()]


def resolve_resume(resume: str | None, ckpt_dir: Path) -> str | None:
    """'latest' → the tag in checkpoints/latest (None when there is none yet); a path → its tag."""
    if resume in (None, "", "none"):
        return None
    if resume == "latest":
        latest = ckpt_dir / "latest"
        return latest.read_text().strip() if latest.is_file() else None
    tag_dir = Path(resume) if Path(resume).is_dir() else ckpt_dir / resume
    if not tag_dir.is_dir() or tag_dir.parent.resolve() != ckpt_dir.resolve():
        raise ValueError(f"--resume {resume}: not a checkpoint of {ckpt_dir} (expected 'latest' or a step_* tag)")
    return tag_dir.name


# ---------------------------------------------------------------------------------- distributed
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_distributed() -> tuple[int, int, int, torch.device]:
    """Single process when not launched by deepspeed/torchrun; gloo on CPU, nccl on GPU."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return rank, world, local_rank, device


def deepspeed_config(cfg: TrainConfig, world: int, bf16: bool) -> dict:
    """The JSON in configs/deepspeed/ with batch, clipping and precision filled from our config."""
    path = Path(cfg.train.deepspeed)
    if not path.is_file():
        raise FileNotFoundError(f"train.deepspeed: {path} does not exist")
    ds = json.loads(path.read_text())
    if "optimizer" in ds or "scheduler" in ds:
        raise ValueError(f"{path}: remove 'optimizer'/'scheduler'; the trainer builds them from optim:")
    t = cfg.train
    per_step = t.micro_batch_size * world
    if t.batch_size % per_step:
        raise ValueError(f"train.batch_size={t.batch_size} is not a multiple of micro_batch_size × ranks = {per_step}")
    if ds.get("zero_optimization", {}).get("stage", 0) == 3:
        raise ValueError(f"{path}: ZeRO-3 breaks saving the diffusers UNet; use stage 2")
    ds.update(train_batch_size=t.batch_size, train_micro_batch_size_per_gpu=t.micro_batch_size,
              gradient_accumulation_steps=t.batch_size // per_step, gradient_clipping=cfg.optim.grad_clip,
              steps_per_print=10**9)
    ds["bf16"] = {"enabled": bf16}
    ds.pop("fp16", None)  # fp16 NaNs with SVD: bf16 or fp32 only
    return ds


# ----------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="train YAML (configs/train/*.yaml)")
    p.add_argument("--resume", default=None, help="'latest', a checkpoint tag step_XXXXXXXX, or none")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a run_dir that already holds checkpoints (deletes them and unet/)")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="key=value overrides, dotted (train.steps=10 optim.lr=1e-4)")
    return p.parse_args(argv)


def check_inputs(cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """Everything that can be wrong with the inputs, checked before any model is built."""
    if cfg.model.pretrained is not None:  # configs and weight files (SVD-XT is published as *.fp16.*)
        check_svd_dir(cfg.model.pretrained, cfg.model.variant, need_unet_weights=cfg.model.unet is None)
    if cfg.model.unet is not None:
        check_unet_dir(cfg.model.unet, cfg.model.variant)
    def shard_list(key: str, patterns: list[str]) -> list[str]:
        try:
            urls = list_shards(patterns, allow_pipe=cfg.data.allow_pipe)
        except PipeRefused as e:
            raise ValueError(f"{key}: {e}") from None
        except (FileNotFoundError, ValueError) as e:
            raise ValueError(f"{key}: {patterns} match no shard (*.tar) files ({e})") from None
        if not urls:
            raise ValueError(f"{key}: {patterns} match no shard (*.tar) files")
        return urls

    train_urls = shard_list("shards", cfg.shards)
    val_urls = shard_list("val_shards", cfg.val_shards) if cfg.val_shards else []
    return train_urls, val_urls


# --------------------------------------------------------------------------- phases, in main's order
@dataclass
class Run:
    """Where this process stands once distributed set-up is done: what every phase below needs."""

    rank: int
    world: int
    device: torch.device
    dtype: torch.dtype  # bf16 on GPU (train.precision auto), else fp32
    run_dir: Path
    ckpt_dir: Path
    ds_config: dict
    resume_tag: str | None


def start_run(cfg: TrainConfig, resume: str | None, stale: list[Path]) -> Run:
    """Distributed set-up, precision, and the run directory: --overwrite's removals by rank 0 (the
    others wait), then config.yaml written."""
    # large, changing activation shapes fragment the CUDA caching allocator; set before CUDA starts
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    rank, world, _, device = setup_distributed()
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    t, run_dir = cfg.train, Path(cfg.run_dir)
    bf16 = t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda")
    run = Run(rank=rank, world=world, device=device, dtype=torch.bfloat16 if bf16 else torch.float32,
              run_dir=run_dir, ckpt_dir=run_dir / CKPT_DIR, ds_config=deepspeed_config(cfg, world, bf16),
              resume_tag=resolve_resume(resume, run_dir / CKPT_DIR))
    if rank == 0:
        for path in stale:  # --overwrite: the previous run's checkpoints and UNets
            log.warning("--overwrite: removing %s", path)
            shutil.rmtree(path)
    dist.barrier()  # nobody reads the run directory while rank 0 clears it
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        import yaml
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run


def build_model(cfg: TrainConfig, run: Run) -> SVD:
    """A real SVD directory, or a tiny random one written once by rank 0; the UNet set to train,
    with gradient checkpointing as the config asks."""
    torch.manual_seed(cfg.seed)
    svd_dir = cfg.model.pretrained
    if svd_dir is None:
        svd_dir = run.run_dir / "tiny_svd"
        if run.rank == 0 and not (svd_dir / "model_index.json").is_file():
            build_tiny_svd(svd_dir, block_out_channels=tuple(cfg.model.tiny_block_out_channels),
                           cross_attention_dim=cfg.model.tiny_cross_attention_dim,
                           vae_block_out_channels=tuple(cfg.model.tiny_vae_block_out_channels),
                           num_frames=cfg.data.num_frames, seed=cfg.seed)
        dist.barrier()
    svd = load_svd(svd_dir, unet_path=cfg.model.unet, dtype=torch.float32, device=run.device,
                   variant=cfg.model.variant)
    if run.dtype != torch.float32:
        svd.vae.to(run.dtype)
        svd.image_encoder.to(run.dtype)
    unet = svd.unet
    unet.train()
    if cfg.model.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if cfg.model.temporal_checkpointing:  # diffusers leaves the temporal blocks out (bench/memory.py)
            enable_temporal_checkpointing(unet)
    if cfg.data.height % (8 * svd.vae_scale) or cfg.data.width % (8 * svd.vae_scale):
        log.info("data size %d×%d is not a multiple of the UNet's 8 × VAE factor %d: the UNet interpolates",
                 cfg.data.height, cfg.data.width, svd.vae_scale)
    return svd


def build_engine(cfg: TrainConfig, unet: torch.nn.Module, run: Run):
    """Optimiser (AdamW; DeepSpeed's CPU Adam with optimizer offload), warm-up schedule, and the
    DeepSpeed engine (ZeRO-2) around the UNet. Returns (engine, scheduler)."""
    import deepspeed

    params = [p for p in unet.parameters() if p.requires_grad]
    offload = run.ds_config.get("zero_optimization", {}).get("offload_optimizer", {}).get("device") == "cpu"
    o = cfg.optim
    if offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam
        optimizer = DeepSpeedCPUAdam(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                                     weight_decay=o.weight_decay, adamw_mode=True)
    else:
        optimizer = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_lambda(o.warmup_steps))
    engine, optimizer, _, scheduler = deepspeed.initialize(model=unet, optimizer=optimizer,
                                                           lr_scheduler=scheduler, config=run.ds_config)
    return engine, scheduler


def resume(engine, cfg: TrainConfig, run: Run) -> tuple[int, dict, int, ShardedEMA]:
    """Weights, optimiser and schedule (DeepSpeed's checkpoint), then step, data positions and the
    EMA; a fresh run starts at step 0 with the EMA at the initial weights. Returns (step,
    positions, first epoch of workers without a position, EMA)."""
    if run.resume_tag is None:
        return 0, {}, 0, ShardedEMA(engine.module)  # fp32, sharded like the master, off the GPU with offload
    _, client = engine.load_checkpoint(str(run.ckpt_dir), tag=run.resume_tag)
    step, positions, start_epoch = int(client["step"]), {}, 0
    if client.get("world_size") == run.world and client.get("num_workers") == cfg.train.num_workers:
        positions = {int(k): tuple(v) for k, v in client["positions"].items()}
    else:  # positions are per global worker: with another layout, start a fresh epoch instead
        start_epoch = 1 + max((int(e) for e, _ in client["positions"].values()), default=-1)
        log.warning("resuming with a different world size / num_workers: data restarts at epoch %d",
                    start_epoch)
    full = torch.load(run.ckpt_dir / run.resume_tag / "ema.pt", map_location="cpu", mmap=True, weights_only=True)
    ema = ShardedEMA(engine.module, full)  # each rank takes its fragments
    log.info("resumed from %s at step %d", run.ckpt_dir / run.resume_tag, step)
    return step, positions, start_epoch, ema


def build_data(cfg: TrainConfig, run: Run, urls: list[str], positions: dict, start_epoch: int) -> Iterator[dict]:
    """This rank's endless batches of packed pairs, each worker from its recorded position."""
    dataset = PairDataset(urls, cfg.data, seed=cfg.seed, rank=run.rank, world_size=run.world, resample=True)
    dataset.set_epoch(start_epoch)
    t = cfg.train
    loader = DataLoader(ResumableStream(dataset, positions), batch_size=t.micro_batch_size,
                        num_workers=t.num_workers, persistent_workers=False,
                        prefetch_factor=t.prefetch_factor if t.num_workers else None)
    return iter(loader)


def validation_pairs(cfg: TrainConfig, run: Run, urls: list[str]) -> list[dict]:
    """Rank 0's first train.val_clips held-out pairs (shard order, seed + 1); none elsewhere."""
    pairs: list[dict] = []
    if run.rank == 0 and urls and cfg.train.val_every > 0:
        val_ds = PairDataset(urls, cfg.data.replace(shuffle_buffer=1), seed=cfg.seed + 1, resample=False)
        for pair in val_ds:
            pairs.append(pair)
            if len(pairs) >= cfg.train.val_clips:
                break
    return pairs


def open_writer(run: Run):
    """TensorBoard on rank 0 (run_dir/tb); None on the other ranks."""
    if run.rank != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(str(run.run_dir / "tb"))


def log_window(writer, window: dict[str, list], step: int, p_mean: float, cfg: TrainConfig, engine, scheduler,
               world: int, elapsed: float) -> None:
    """The losses and σs since the last log: mean loss, loss per σ bin, lr, gradient norm,
    samples/s and P_mean, to TensorBoard (rank 0)."""
    if writer is None:
        return
    losses, sigmas = np.array(window["loss"]), np.array(window["sigma"])
    writer.add_scalar("loss", losses.mean(), step)
    edges = edm.sigma_bin_edges(p_mean, cfg.edm.p_std, cfg.train.sigma_bins)
    bins = np.digitize(sigmas, edges)
    for b in range(cfg.train.sigma_bins):
        if (bins == b).any():
            writer.add_scalar(f"loss_sigma_bin/{b}", losses[bins == b].mean(), step)
    writer.add_scalar("lr", scheduler.get_last_lr()[0], step)
    gn = engine.get_global_grad_norm()
    if gn is not None:
        writer.add_scalar("grad_norm", float(gn), step)
    writer.add_scalar("samples_per_s", len(losses) * world / max(elapsed, 1e-9), step)
    writer.add_scalar("p_mean", p_mean, step)


def write_checkpoint(engine, ema: ShardedEMA, positions: dict, step: int, cfg: TrainConfig, run: Run) -> None:
    """Every rank's data positions merged, then `save_checkpoint` with the full EMA (collective)."""
    gathered = [None] * run.world
    dist.all_gather_object(gathered, positions)
    merged = {k: v for part in gathered for k, v in part.items()}
    client = {"step": step, "positions": merged, "world_size": run.world, "num_workers": cfg.train.num_workers}
    save_checkpoint(engine, ema.full(run.device), run.ckpt_dir, step, client, cfg.train.keep_last, run.rank)


def validate_ema(engine, ema: ShardedEMA, svd: SVD, val_pairs: list[dict], cfg: TrainConfig, step: int, run: Run,
                 writer) -> None:
    """Samples from the EMA weights: every rank gathers the EMA (collective); rank 0, which holds
    the pairs, swaps it into the UNet, writes the samples and swaps the raw weights back."""
    ema_full = ema.full(run.device)
    if not val_pairs:
        return
    unet_module = engine.module
    unet_module.eval()
    raw = swap_in(unet_module, ema_full)
    paths = validate(unet_module, svd, val_pairs, cfg, step, run.device, run.dtype, writer)
    swap_in(unet_module, raw)
    unet_module.train()
    log.info("validation samples: %s", ", ".join(str(p) for p in paths))


def save_final(engine, ema: ShardedEMA, run: Run, writer) -> None:
    """The UNet for generation, fp32 from the master (not the bf16 module): EMA weights in unet/,
    the raw last weights in unet_raw/ (both collectives, then written by rank 0)."""
    master, ema_full = gather_full(engine.module, None, run.device), ema.full(run.device)
    if run.rank == 0:
        save_unet_fp32(engine.module, master, run.run_dir / "unet_raw")
        save_unet_fp32(engine.module, ema_full, run.run_dir / "unet")
        writer.close()
        log.info("final UNet (EMA) saved to %s", run.run_dir / "unet")
    dist.barrier()


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    cfg = TrainConfig.load(args.config, args.overrides)
    train_urls, val_urls = check_inputs(cfg)  # every input checked before any work
    stale = check_run_dir(Path(cfg.run_dir), args.resume, args.overwrite)
    check_resume_world(Path(cfg.run_dir) / CKPT_DIR, resolve_resume(args.resume, Path(cfg.run_dir) / CKPT_DIR),
                       int(os.environ.get("WORLD_SIZE", 1)))
    run = start_run(cfg, args.resume, stale)
    svd = build_model(cfg, run)
    engine, scheduler = build_engine(cfg, svd.unet, run)
    step, positions, start_epoch, ema = resume(engine, cfg, run)
    batches = build_data(cfg, run, train_urls, positions, start_epoch)
    val_pairs = validation_pairs(cfg, run, val_urls)
    writer = open_writer(run)

    t, rank, device, dtype = cfg.train, run.rank, run.device, run.dtype
    lat_h, lat_w = cfg.data.height // svd.vae_scale, cfg.data.width // svd.vae_scale
    lat_weight = edm.latitude_weight(lat_h, lat_w, cfg.data.weight_kind, cfg.data.weight_delta).to(device)
    accum = engine.gradient_accumulation_steps()
    ramp = cfg.edm.p_mean_ramp_steps or t.steps
    window: dict[str, list] = {"loss": [], "sigma": []}
    t_log = time.perf_counter()
    bar = tqdm(total=t.steps, initial=step, desc="train", disable=rank != 0, dynamic_ncols=True)

    while step < t.steps:
        p_mean = edm.p_mean_at(step, ramp, cfg.edm.p_mean_start, cfg.edm.p_mean_end)
        for micro in range(accum):
            batch = unpack_batch(next(batches))
            record_positions(positions, batch)
            gen = step_generator(cfg.seed, step, rank, micro)
            prepared = prepare_batch(svd, batch, cfg, gen, device, dtype)
            loss, sigma = edm_training_loss(engine, prepared, p_mean, cfg.edm.p_std, lat_weight, gen)
            engine.backward(loss.mean())
            if micro == accum - 1:
                ema.wait()  # the optimizer step below changes the master the EMA reads
            engine.step()
            window["loss"] += loss.detach().float().cpu().tolist()
            window["sigma"] += sigma.detach().float().cpu().tolist()
        step += 1
        ema.update(ema_decay_at(step, t.ema_decay))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(window['loss'][-accum * t.micro_batch_size:]):.4f}")

        if step % t.log_every == 0 or step == t.steps:
            log_window(writer, window, step, p_mean, cfg, engine, scheduler, run.world, time.perf_counter() - t_log)
            window, t_log = {"loss": [], "sigma": []}, time.perf_counter()
        if step % t.ckpt_every == 0 or step == t.steps:
            write_checkpoint(engine, ema, positions, step, cfg, run)
        if t.val_every > 0 and (step % t.val_every == 0 or step == t.steps) and cfg.val_shards:
            validate_ema(engine, ema, svd, val_pairs, cfg, step, run, writer)
        if dist.is_initialized():
            dist.barrier()  # validation runs on rank 0 only; the others wait here
    bar.close()
    save_final(engine, ema, run, writer)
    return run.run_dir


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:  # bad input: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
