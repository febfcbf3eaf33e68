"""Training-pair throughput: pairs/s with 1 and 2 DataLoader workers at 384×768×25 and 512×1024×25,
and the time per pair spent in decode, projection and the rest (single process); and the shared
memory the pairs occupy per rank crossing the DataLoader's process boundary.

    .venv/bin/python bench/data.py [--pairs 6] [--sizes 384 512]
    .venv/bin/python bench/data.py --shm-only          # the shared-memory table alone (stage 2)

Shared memory: each DataLoader worker hands its batches to the trainer through shared memory, and
up to workers × prefetch_factor batches wait there per rank. The bytes of one real stage-2 pair
(micro-batch 1) are measured as received from a worker process (every tensor checked to be in
shared memory), in the trainer's layout (uint8 pixels, the mask packed 8 pixels a byte, no
latitude weight: `model.data.pack_for_loader`), and for the layout before (float32 target,
condition, pers and mask, plus the (1,H,W) weight, rebuilt from the same pair).

Clips: 8 s of ../shared/data/samples/testRoom1_1920Mono.mp4 (a real 1920×960 30 fps equirect)
re-encoded at each size like a curated clip (H.264 crf 20, keyframe every 2 s), 4 samples in 2
shards; a procedural panorama when the sample is absent. Pairs: T = 25 at 5 fps (the authors'
subsampling), FoV and trajectory from the default TrajectoryConfig, perspective input 224².
The rate a trainer needs is derived from the paper's wall-clock (supp. §3.2).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.data import PairConfig, PairDataset, pack_for_loader, unpack_batch  # noqa: E402
from shards.video import decode_frames, encode_mp4, probe  # noqa: E402
from shards.writer import ShardWriter  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples" / "testRoom1_1920Mono.mp4"
CLIP_S, CLIP_FPS = 8.0, 30.0

# Paper, supp. §3.2: stage 1 = 100k steps × batch 16 in ~6 days on 16 A6000; stage 2 = 20k steps ×
# batch 16 in ~4 days on 8 A100. Pairs per second per GPU the loader must sustain:
NEEDED = {
    "stage 1 (384×768, 16 A6000)": 100_000 * 16 / (6 * 86400) / 16,
    "stage 2 (512×1024, 8 A100)": 20_000 * 16 / (4 * 86400) / 8,
}


def source_frames(height: int, num_frames: int) -> tuple[np.ndarray, str]:
    if SAMPLE.is_file():
        info = probe(SAMPLE)
        n = min(num_frames, info.num_frames)
        return decode_frames(SAMPLE, indices=range(n), size=(2 * height, height)), SAMPLE.name
    lon = np.linspace(-np.pi, np.pi, 2 * height)[None, :, None]
    lat = np.linspace(np.pi / 2, -np.pi / 2, height)[:, None, None]
    rng = np.random.default_rng(0)
    frames = [(127 + 60 * np.sin(5 * lon + 0.1 * t) * np.cos(3 * lat) + rng.normal(0, 20, (height, 2 * height, 3)))
              .clip(0, 255).astype(np.uint8) for t in range(num_frames)]
    return np.stack(frames), "procedural"


def build_shards(out_dir: Path, height: int) -> str:
    frames, name = source_frames(height, int(CLIP_S * CLIP_FPS))
    mp4 = encode_mp4(frames, fps=CLIP_FPS)
    t, h, w, _ = frames.shape
    with ShardWriter(out_dir, prefix="bench", max_samples=2) as writer:
        for i in range(4):
            meta = dict(video_id=f"bench{i}", clip_index=0, source=name, start_s=0.0, end_s=t / CLIP_FPS,
                        fps=CLIP_FPS, num_frames=t, width=w, height=h, config_hash="bench")
            writer.write(f"bench{i}_0000", mp4, meta)
    return f"{name}, {len(mp4) / 2**20:.1f} MiB per clip"


def breakdown(shards: Path, config: PairConfig, pairs: int) -> dict:
    dataset = PairDataset(shards, config, seed=0, resample=True)
    stream = iter(dataset)
    next(stream)  # warm-up: imports, codec start-up
    dataset.timings.clear()
    t0 = time.perf_counter()
    for _ in range(pairs):
        next(stream)
    wall = (time.perf_counter() - t0) / pairs
    decode = dataset.timings["decode"] / pairs
    projection = dataset.timings["projection"] / pairs
    return dict(wall=wall, decode=decode, projection=projection, rest=wall - decode - projection)


def loader_rate(shards: Path, config: PairConfig, workers: int, pairs: int) -> float:
    loader = DataLoader(PairDataset(shards, config, seed=0, resample=True), batch_size=None,
                        num_workers=workers, prefetch_factor=1)
    stream = iter(loader)
    for _ in range(workers):  # warm-up: every worker has made its first pair
        next(stream)
    t0 = time.perf_counter()
    for _ in range(pairs):
        next(stream)
    rate = pairs / (time.perf_counter() - t0)
    del stream
    return rate


def batch_bytes(batch: dict) -> tuple[int, bool]:
    """Bytes of the tensors of one collated batch, and whether all of them are in shared memory."""
    tensors = [v for v in batch.values() if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors), all(t.is_shared() for t in tensors)


def float_layout(batch: dict, config: PairConfig) -> dict:
    """The same batch in the layout pairs had before: float32 pixels and mask, and the weight."""
    from model.edm import latitude_weight

    old = dict(batch)
    for k in ("target", "condition", "pers", "mask"):
        old[k] = batch[k].float() / (1 if k == "mask" else 127.5) - (0 if k == "mask" else 1)
    old["weight"] = latitude_weight(config.height, config.width)[None]
    old.pop("context_frames", None)
    old.pop("mask_bits", None)
    old.pop("mask_width", None)
    return old


class Packed(torch.utils.data.IterableDataset):
    """The trainer's wire format: PairDataset's pairs through `pack_for_loader` (model/train.py)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __iter__(self):
        return (pack_for_loader(p) for p in self.dataset)


def shared_memory_table(shards: Path, config: PairConfig, workers: int = 6) -> list[str]:
    loader = DataLoader(Packed(PairDataset(shards, config, seed=0, resample=True)), batch_size=1, num_workers=1,
                        prefetch_factor=1)
    wire = next(iter(loader))  # came from a worker process: its tensors live in shared memory
    now, shared = batch_bytes(wire)
    batch = unpack_batch(wire)
    unpacked, _ = batch_bytes(batch)
    before, _ = batch_bytes(float_layout(batch, config))
    lines = [f"\nshared memory per rank, {config.height}×{config.width}×{config.num_frames}, micro-batch 1, "
             f"{workers} DataLoader workers (received tensors in shared memory: {shared})",
             f"{'layout':<46}{'one pair':>10}{'prefetch 2: per rank':>22}{'8-GPU node':>12}"
             f"{'prefetch 1: per rank':>22}"]
    for name, b in (("before: float32 pixels + mask, weight", before),
                    ("uint8 pixels, bool mask", unpacked),
                    ("now: uint8 pixels, mask bits (trainer)", now)):
        lines.append(f"{name:<46}{b / 2**20:>6.1f} MiB{b * workers * 2 / 2**30:>11.2f} GiB "
                     f"({b * workers * 2 / 1e9:.2f} GB){8 * b * workers * 2 / 2**30:>8.1f} GiB"
                     f"{b * workers / 2**30:>11.2f} GiB ({b * workers / 1e9:.2f} GB)")
    lines.append(f"target ≤ 1 GB per rank at prefetch 2 (train.prefetch_factor): {now * workers * 2 / 1e9:.2f} GB "
                 f"= {now * workers * 2 / 2**30:.2f} GiB")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=6, help="pairs timed per setting")
    parser.add_argument("--sizes", type=int, nargs="+", default=[384, 512], help="equirect heights")
    parser.add_argument("--shm-only", action="store_true", help="only the shared-memory table (stage 2)")
    args = parser.parse_args()
    if args.shm_only:
        with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
            what = build_shards(Path(tmp) / "h512", 512)
            config = PairConfig(num_frames=25, fps=5.0, height=512, width=1024, shuffle_buffer=1,
                                context_frames=5, context_prob=0.5)
            print(f"clips: {what}")
            print("\n".join(shared_memory_table(Path(tmp) / "h512", config)))
        return
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()} "
          f"(DataLoader workers use 1 each)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        for height in args.sizes:
            shards = Path(tmp) / f"h{height}"
            what = build_shards(shards, height)
            config = PairConfig(num_frames=25, fps=5.0, height=height, width=2 * height, shuffle_buffer=4)
            b = breakdown(shards, config, args.pairs)
            rates = {w: loader_rate(shards, config, w, args.pairs) for w in (1, 2)}
            rows.append((f"{height}×{2 * height}×25", what, b, rates))
        shm = (shared_memory_table(Path(tmp) / "h512", PairConfig(num_frames=25, fps=5.0, height=512, width=1024,
                                                                  shuffle_buffer=1)) if 512 in args.sizes else [])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"\n{'pairs':<16}{'1 worker':>10}{'2 workers':>11}{'single process: per pair':>27}"
          f"{'decode':>9}{'projection':>12}{'rest':>8}")
    for size, what, b, rates in rows:
        print(f"{size:<16}{rates[1]:>8.2f}/s{rates[2]:>9.2f}/s{b['wall']:>25.2f} s"
              f"{b['decode']:>8.2f}s{b['projection']:>11.2f}s{b['rest']:>7.2f}s   ({what})")
    print(f"\npeak RSS of the main process: {rss:.0f} MiB; load average during the run: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min) on {os.cpu_count()} cores")
    print("\n".join(shm))
    print("\nneeded per GPU (paper wall-clock, supp. §3.2):")
    for stage, rate in NEEDED.items():
        print(f"  {stage:<30}{rate:.3f} pairs/s  (one pair every {1 / rate:.1f} s)")


if __name__ == "__main__":
    main()
