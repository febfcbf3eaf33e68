"""Training pairs from 360° clips: (equirect target, view-aligned condition canvas, perspective input).

One pair from one clip (`make_pair`, paper §3.2–3.3):

1. T frames of the clip at `fps` from a random start, decoded at height×width (`load_frames`).
2. A random circular shift of the panorama by a whole number of pixels (exact; §3.2 "since
   horizontal rotation preserves the 360° property, we augment the data with random circular
   shifts"). The shifted frames are the target.
3. A simulated camera trajectory (paper eq. 3: noise + oscillation + drift, yaw offset φ0) and a
   FoV (h, v) from `geometry.simulate_trajectory`.
4. The perspective frames rendered from the target along that trajectory.
5. The condition canvas: every perspective frame projected back into the equirect at the *same*
   pose it was rendered from (view-based frame alignment, §3.3), black outside its mask. Inside
   the mask the canvas equals the target up to two bilinear resamplings; this is what the model
   sees at inference, where a real perspective video is projected at its estimated poses.
6. Context-aware mode with probability `context_prob`: the first S = `context_frames` canvases are
   the full target frames (mask all ones), as when a long video is generated in windows that reuse
   the last S generated frames (§3.3 "Long Video Generation").
7. Optional colour gains (`colour_gain` > 0, not in the paper): one random gain per RGB channel on
   target, canvas and perspective frames alike. For tiny corpora (the CPU demo trains on three
   scenes): colours then have to be read from what the input shows instead of memorised per scene.

How the yaw offset φ0 and the circular shift interact. Both are rotations about the vertical
axis, but they do different jobs. The shift s moves the *content*: the target is the clip rolled
by s. φ0 moves the *view*: the perspective window, and so the mask, sits around longitude φ0 in
the canvas. `circular_shift(x, s)` brings the content at longitude s to the centre, so a view
at yaw ψ sees the clip's original longitude ψ + s: the perspective pixels depend on φ0 + s only,
and the shift alone already randomises what the input shows; φ0 decides where the visible region
lies in the canvas. At inference the generator aligns poses relative to the first frame (its yaw
becomes 0, the canvas centre), which corresponds to φ0 = 0 here: set `trajectory: {yaw_offset_deg: 0}` in
the data config to train exactly that layout, or keep it random so the model also learns inputs placed
anywhere in longitude (a superset; the seam is then crossed by the mask too).

Perspective frames come at two resolutions. The frames projected back are rendered at the
equirect's own angular pixel density at the view centre (`render_scale` × that), so the
condition is about as sharp as the target there, not limited by the CLIP input size (at
inference the input video is usually sharper than the panorama). Two bilinear resamplings still
cost some detail on real footage: on a real equirect photo, PSNR inside the mask is 28–34 dB at
render_scale 1 and 31–40 dB at 2 (lowest for wide views near the poles, where the equirect is
oversampled horizontally); on smooth content it is > 50 dB, so geometry errors stand out. Higher
render_scale costs equirect→perspective time ∝ scale². The `pers` output (the CLIP input) is that rendering resized to a square
`pers_size` × `pers_size` covering the sampled (h, v) FoV, with non-square pixels when h ≠ v:
this is what SVD's CLIP preprocessing does to any input (it resizes to 224×224 without keeping
the aspect), so the network sees the same thing from a real video of that FoV.

`PairDataset` streams pairs from WebDataset shards for the trainer; `python -m model.data preview`
draws one pair.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import yaml
from torch.utils.data import IterableDataset, get_worker_info

from geometry import (TrajectoryConfig, circular_shift, equirect_to_perspective, perspective_to_equirect,
                      simulate_trajectory)
from model.frames import channels_first, native_render_hw, outlined, resize_frames, to_uint8
from shards.reader import iter_samples, list_shards
from shards.video import decode_frames, probe, sample_indices

log = logging.getLogger("model.data")


# --------------------------------------------------------------------------------------- config
@dataclass
class PairConfig:
    """How pairs are made: the `data:` section of a train config (all angles in degrees)."""

    num_frames: int = 25          # T: SVD(-XT) generates 25 frames (paper §4.1)
    fps: float | None = 5.0       # frames subsampled to 5 fps (authors' code); None = native rate
    height: int = 384             # equirect size: stage 1 is 384×768, stage 2 512×1024
    width: int = 768
    pers_size: int = 224          # perspective input (CLIP image size), rendered square
    render_scale: float = 1.0     # density of the projected-back perspective vs the equirect's
    context_frames: int = 5       # S: fully visible first frames in context-aware mode (paper)
    context_prob: float = 0.0     # stage 1: 0; stage 2 alternates standard / context-aware: 0.5
    circular_shift: bool = True   # random horizontal roll of the panorama (paper §3.2)
    colour_gain: float = 0.0      # per-channel gains from [1 − g, 1 + g] on the whole pair (0 = off)
    shuffle_buffer: int = 64      # samples (mp4 bytes, before decoding) held for shuffling
    weight_kind: str = "paper"    # latitude weight: "paper" λ(h) or "authors" (model.edm)
    weight_delta: float = 0.01
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    allow_pipe: bool = False      # let `pipe:CMD` shard URLs run CMD in a shell (never from configs you did not write)
    max_member_mb: dict[str, float] = field(default_factory=dict)  # shard member size limits, e.g. {mp4: 512}

    def __post_init__(self):
        if isinstance(self.trajectory, dict):
            self.trajectory = TrajectoryConfig.from_dict(self.trajectory)
        problems = []
        if self.num_frames < 1:
            problems.append(f"num_frames must be ≥ 1, got {self.num_frames}")
        if self.fps is not None and self.fps <= 0:
            problems.append(f"fps must be > 0 or null, got {self.fps}")
        if self.height < 2 or self.width != 2 * self.height:
            problems.append(f"width must be 2 × height (equirect), got {self.height}×{self.width}")
        if self.height % 2:
            problems.append(f"height must be even (yuv420p clips), got {self.height}")
        if self.pers_size < 8:
            problems.append(f"pers_size must be ≥ 8, got {self.pers_size}")
        if not 0.0 < self.render_scale <= 4.0:
            problems.append(f"render_scale must be in (0, 4], got {self.render_scale}")
        if self.context_frames < 0 or (self.context_prob > 0 and self.context_frames > self.num_frames):
            problems.append(f"context_frames must be in [0, num_frames={self.num_frames}], "
                            f"got {self.context_frames}")
        if not 0.0 <= self.colour_gain < 1.0:
            problems.append(f"colour_gain must be in [0, 1), got {self.colour_gain}")
        if not 0.0 <= self.context_prob <= 1.0:
            problems.append(f"context_prob must be in [0, 1], got {self.context_prob}")
        if self.shuffle_buffer < 1:
            problems.append(f"shuffle_buffer must be ≥ 1 (1 = no shuffling), got {self.shuffle_buffer}")
        try:
            self.read_limits()
        except ValueError as e:
            problems.append(str(e))
        if problems:
            raise ValueError("PairConfig: " + "; ".join(problems))

    def read_limits(self):
        """The shard reader's bounds (shards.reader.ReadLimits) with `max_member_mb` applied."""
        from shards.reader import ReadLimits

        if not isinstance(self.max_member_mb, dict):
            raise ValueError(f"max_member_mb must be a mapping EXT: MiB, got {self.max_member_mb!r}")
        return ReadLimits.from_mb(self.max_member_mb)

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "PairConfig") -> "PairConfig":
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{source}: unknown data key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "PairConfig":
        """A data YAML, or a train config whose `data:` section is used."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such config file")
        d = yaml.safe_load(path.read_text()) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping, got {type(d).__name__}")
        if isinstance(d.get("data"), dict):
            d = d["data"]
        return cls.from_dict(d, source=str(path))

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["trajectory"] = self.trajectory.to_dict()
        return d

    def replace(self, **changes) -> "PairConfig":
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------- pure functions
def solid_angle(fov_deg: Sequence[float]) -> float:
    """Solid angle (sr) of a rectangular-FoV pyramid: Ω = 4·arcsin(sin(h/2)·sin(v/2))."""
    h, v = np.radians(np.asarray(fov_deg, dtype=np.float64))
    return float(4.0 * np.arcsin(np.sin(h / 2) * np.sin(v / 2)))


def clip_frame_indices(num_available: int, src_fps: float, config: PairConfig, rng: np.random.Generator,
                       name: str = "clip") -> np.ndarray:
    """T frame indices at `config.fps` from a random whole-frame start that keeps all T in the clip."""
    base = sample_indices(num_available, src_fps, config.fps, config.num_frames, name)
    start = int(rng.integers(0, num_available - int(base[-1])))
    return base + start


def load_frames(mp4: bytes, rng: np.random.Generator, config: PairConfig, name: str = "clip") -> np.ndarray:
    """Decode only the T frames a pair needs, resized to the config's equirect size: (T,H,W,3) uint8."""
    info = probe(mp4)
    indices = clip_frame_indices(info.num_frames, info.fps, config, rng, name)
    return decode_frames(mp4, indices=indices, size=(config.width, config.height))


def pack_for_loader(pair: dict[str, Any]) -> dict[str, Any]:
    """The pair as it crosses the DataLoader's process boundary: the (T,1,H,W) bool mask packed
    8 pixels a byte along the width ("mask_bits"); `unpack_batch` undoes it on the other side."""
    out = dict(pair)
    mask = out.pop("mask")
    out["mask_bits"] = torch.from_numpy(np.packbits(mask.numpy(), axis=-1))
    out["mask_width"] = mask.shape[-1]
    return out


def unpack_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A collated batch of `pack_for_loader` pairs with its bool "mask" (…,T,1,H,W) back (any device)."""
    if "mask_bits" not in batch:
        return batch
    out = dict(batch)
    bits = out.pop("mask_bits")
    width = out.pop("mask_width")
    width = int(width.reshape(-1)[0]) if torch.is_tensor(width) else int(width)
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=bits.device)
    out["mask"] = ((bits.unsqueeze(-1) >> shifts) & 1).flatten(-2)[..., :width].bool()
    return out


def view_aligned_condition(target: np.ndarray, yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray,
                           fov_deg: Sequence[float], render_hw: tuple[int, int]
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render perspective frames from the target at the poses, project them back at the same poses.

    target (T,H,W,3) uint8; poses (T,) degrees; fov (h, v). Returns perspective frames
    (T,h,w,3) uint8, condition canvas (T,H,W,3) uint8 (black outside the mask) and mask (T,H,W) bool.
    """
    fov = tuple(float(f) for f in fov_deg)
    pers = equirect_to_perspective(target, fov, yaw=yaw, pitch=pitch, roll=roll, out_hw=tuple(render_hw))
    condition, mask = perspective_to_equirect(pers, fov, yaw=yaw, pitch=pitch, roll=roll,
                                              out_hw=tuple(target.shape[1:3]))  # black outside the mask
    return pers, condition, mask


def scale_colours(frames: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """uint8 frames × per-channel gains (a copy). Linear, so it commutes with the projections'
    bilinear resampling, and black stays black: a canvas keeps its mask."""
    return np.clip(frames * gain.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)


def _tick(timings: dict | None, key: str, t0: float) -> float:
    t1 = time.perf_counter()
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + (t1 - t0)
    return t1


def make_pair(frames: np.ndarray, rng: np.random.Generator, config: PairConfig,
              timings: dict | None = None) -> dict[str, Any]:
    """One training pair from (T,H,W,3) uint8 equirect frames (already at the config's size).

    Random draws, in this order: circular shift, trajectory and FoV, context mode, colour gains. Returns tensors
    (see docs/CONTRACTS.md "model.data"): target, condition (T,3,H,W) uint8 (`model.frames.signed_unit` → [−1,1];
    condition 0 = −1 outside the mask); mask (T,1,H,W) bool; pers (T,3,s,s) uint8; yaw, pitch, roll
    (T,) and fov (2,) degrees; context (bool) and context_frames (S when context, else 0; those
    frames are fully visible and clean); shift (degrees the panorama was rolled by). uint8 and
    bool because every pair crosses the DataLoader's process boundary through shared memory
    (bench/data.py); the latitude weight is the trainer's (`model.edm.latitude_weight`).
    `timings`, when given, accumulates seconds under "projection" and "rest".
    """
    t0 = time.perf_counter()
    frames = np.asarray(frames)
    T, H, W = config.num_frames, config.height, config.width
    if frames.shape != (T, H, W, 3) or frames.dtype != np.uint8:
        raise ValueError(f"make_pair: frames must be ({T}, {H}, {W}, 3) uint8 for this config, "
                         f"got {frames.shape} {frames.dtype}")

    shift_px = int(rng.integers(0, W)) if config.circular_shift else 0
    shift_deg = shift_px * 360.0 / W
    target = circular_shift(frames, shift_deg) if shift_px else frames
    traj = simulate_trajectory(T, rng, config.trajectory)
    yaw, pitch, roll = (np.asarray(a, dtype=np.float64).reshape(T) for a in (traj.yaw, traj.pitch, traj.roll))
    fov = np.asarray(traj.fov_deg, dtype=np.float64).reshape(2)
    context = bool(rng.random() < config.context_prob) if config.context_frames > 0 else False

    t0 = _tick(timings, "rest", t0)
    render_hw = native_render_hw(fov, (H, W), config.render_scale)
    pers, condition, mask = view_aligned_condition(target, yaw, pitch, roll, fov, render_hw)
    t0 = _tick(timings, "projection", t0)

    if context:
        S = config.context_frames
        condition[:S] = target[:S]
        mask[:S] = True
    if config.colour_gain > 0:  # drawn last, so every other draw is that of a run without it
        gain = rng.uniform(1 - config.colour_gain, 1 + config.colour_gain, 3)
        target, condition, pers = (scale_colours(x, gain) for x in (target, condition, pers))
    pers = resize_frames(pers, (config.pers_size, config.pers_size))
    pair = {
        "target": channels_first(target),
        "condition": channels_first(condition),
        "mask": torch.from_numpy(np.ascontiguousarray(mask)).unsqueeze(1),
        "pers": channels_first(pers),
        "yaw": torch.from_numpy(yaw).float(),
        "pitch": torch.from_numpy(pitch).float(),
        "roll": torch.from_numpy(roll).float(),
        "fov": torch.from_numpy(fov).float(),
        "context": context,
        "context_frames": config.context_frames if context else 0,
        "shift": float(shift_deg),
    }
    _tick(timings, "rest", t0)
    return pair


# ------------------------------------------------------------------------------------ streaming
def assign_shards(shards: Sequence[str], worker: int, num_workers: int, seed: int, epoch: int
                  ) -> tuple[list[str], int, int]:
    """Which shards a global worker reads in an epoch, and which of their samples it keeps.

    Every worker computes the same shard permutation from (seed, epoch). With at least as many
    shards as workers, worker w takes shards w, w+n, … of it and keeps every sample; with fewer
    shards, every worker reads all shards and keeps sample i when i mod n = w. Either way each
    sample of the epoch goes to exactly one worker. Returns (shards, modulus, remainder).
    """
    order = np.random.default_rng([seed, epoch]).permutation(len(shards))
    ordered = [shards[i] for i in order]
    if len(shards) >= num_workers:
        return ordered[worker::num_workers], 1, 0
    return ordered, num_workers, worker


def shuffle_buffer(items: Iterable, size: int, rng: np.random.Generator) -> Iterator:
    """Yield items in a random order using a buffer of `size` (size 1: input order)."""
    buf: list = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        i = int(rng.integers(0, size))
        buf[i], item = item, buf[i]
        yield item
    rng.shuffle(buf)
    yield from buf


def sample_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """The random stream of one sample in one epoch: the same pair for the same seed, whatever
    the number of ranks and workers or the shuffle order."""
    return np.random.default_rng([seed, epoch, zlib.crc32(key.encode())])


class PairDataset(IterableDataset):
    """Endless (resample=True) or one-epoch stream of training pairs from WebDataset shards.

    urls: shard files, directories or globs (`shards.reader.list_shards`). Split by rank (DDP) and
    DataLoader worker at the shard level (`assign_shards`), shuffled by shard order and a buffer
    of `config.shuffle_buffer` samples, each pair drawn from `sample_rng(seed, epoch, key)`.
    Samples that fail to decode or are too short are skipped, logged and counted: `stats` in this
    process, and every yielded pair carries `skipped`, the number skipped just before it, so the
    trainer's sum over batches is the total across workers.
    """

    def __init__(self, urls: str | Sequence[str], config: PairConfig, seed: int = 0, rank: int = 0,
                 world_size: int = 1, resample: bool = True):
        if isinstance(urls, (str, Path)):
            urls = [urls]
        self.shards = [str(s) for s in list_shards([str(u) for u in urls], allow_pipe=config.allow_pipe)]
        if not self.shards:
            raise ValueError(f"PairDataset: no shards found in {list(urls)}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"PairDataset: need 0 ≤ rank < world_size, got rank={rank} world_size={world_size}")
        self.config, self.seed, self.rank, self.world_size = config, int(seed), int(rank), int(world_size)
        self.resample = resample
        self.epoch = 0
        self.stats: Counter = Counter()
        self.timings: dict[str, float] = {}

    def set_epoch(self, epoch: int) -> None:
        """First epoch of the next iteration (call before each epoch when resample=False)."""
        self.epoch = int(epoch)

    def pair_from_sample(self, sample, epoch: int) -> dict[str, Any]:
        rng = sample_rng(self.seed, epoch, sample.key)
        t0 = time.perf_counter()
        frames = load_frames(sample.mp4, rng, self.config, name=f"sample {sample.key}")
        _tick(self.timings, "decode", t0)
        pair = make_pair(frames, rng, self.config, self.timings)
        pair["key"] = sample.key
        return pair

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * num_workers + worker_id, self.world_size * num_workers

    def epoch_samples(self, epoch: int):
        """This worker's samples of one epoch, shuffled (mp4 bytes, not decoded yet), and the
        shard reader (its `stats.skipped` counts samples the reader itself rejected)."""
        worker, num_workers = self._worker()
        shards, modulus, remainder = assign_shards(self.shards, worker, num_workers, self.seed, epoch)
        reader = iter_samples(shards, strict=False, limits=self.config.read_limits(),
                              allow_pipe=self.config.allow_pipe)
        mine = (s for i, s in enumerate(reader) if i % modulus == remainder)
        rng = np.random.default_rng([self.seed, epoch, worker, 1])
        return shuffle_buffer(mine, self.config.shuffle_buffer, rng), reader

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.epoch
        worker, num_workers = self._worker()
        skipped = 0
        while True:
            yielded = 0
            samples, reader = self.epoch_samples(epoch)
            reader_skipped = 0
            for sample in samples:
                if reader.stats.skipped > reader_skipped:  # bad tar members / metadata, seen by the reader
                    new = reader.stats.skipped - reader_skipped
                    reader_skipped = reader.stats.skipped
                    self.stats["skipped_reader"] += new
                    self.stats["skipped"] += new
                    skipped += new
                try:
                    pair = self.pair_from_sample(sample, epoch)
                except Exception as e:  # a bad clip must not stop training: skip, log, count
                    reason = type(e).__name__
                    self.stats[f"skipped_{reason}"] += 1
                    self.stats["skipped"] += 1
                    skipped += 1
                    log.warning("skipping sample %s (%s: %s)", getattr(sample, "key", "?"), reason, e)
                    continue
                self.stats["pairs"] += 1
                pair["skipped"] = skipped
                skipped = 0
                yielded += 1
                yield pair
            if reader.stats.skipped > reader_skipped:
                self.stats["skipped_reader"] += reader.stats.skipped - reader_skipped
                self.stats["skipped"] += reader.stats.skipped - reader_skipped
            if not self.resample:
                return
            if yielded == 0:
                raise RuntimeError(
                    f"PairDataset: worker {worker} of {num_workers} got no usable sample in epoch {epoch} "
                    f"from {len(self.shards)} shard(s) ({self.stats['skipped']} skipped): fewer good "
                    f"samples than ranks × workers, or every clip is bad")
            epoch += 1


# -------------------------------------------------------------------------------------- preview

def preview_frames(pair: dict[str, Any]) -> np.ndarray:
    """(T, H, W_total, 3) uint8: target | condition with mask outline | perspective input."""
    import cv2

    target, pers = to_uint8(pair["target"]), to_uint8(pair["pers"])
    condition = outlined(to_uint8(pair["condition"]), pair["mask"][:, 0].numpy().astype(bool))
    T, H, W, _ = target.shape
    h_fov, v_fov = (float(f) for f in pair["fov"])
    # show the CLIP input at the FoV's true aspect (it is stored square)
    pers_w = int(round(H * math.tan(math.radians(h_fov) / 2) / math.tan(math.radians(v_fov) / 2)))
    pers_w = min(max(2, pers_w + pers_w % 2), 2 * W)
    gap = np.full((H, max(2, W // 64), 3), 255, np.uint8)
    rows = []
    for t in range(T):
        p = cv2.resize(pers[t], (pers_w, H), interpolation=cv2.INTER_LINEAR)
        rows.append(np.concatenate([target[t], gap, condition[t], gap, p], axis=1))
    return np.stack(rows)


def preview_image(pair: dict[str, Any], rows: int = 5) -> np.ndarray:
    """A grid of `rows` time steps (evenly spaced) of `preview_frames`, with a title row."""
    import cv2

    frames = preview_frames(pair)
    T = frames.shape[0]
    steps = np.unique(np.linspace(0, T - 1, min(rows, T)).round().astype(int))
    sep = np.full((2, frames.shape[2], 3), 255, np.uint8)
    title = np.zeros((24, frames.shape[2], 3), np.uint8)
    fov = [float(f) for f in pair["fov"]]
    text = (f"{pair.get('key', '')}  fov {fov[0]:.0f}x{fov[1]:.0f}  shift {pair['shift']:.0f}  "
            f"context {bool(pair['context'])}  | target | condition+mask | perspective  t={steps.tolist()}")
    cv2.putText(title, text, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    parts = [title]
    for t in steps:
        parts += [frames[t], sep]
    return np.concatenate(parts[:-1], axis=0)


def fit_fps_to_clip(config: PairConfig, num_available: int, src_fps: float, name: str = "clip") -> PairConfig:
    """`config`, or with `fps` raised just enough that its T frames fit in a clip that is too short
    for them (the preview's defaults, 25 frames at 5 fps = 4.8 s, on 4-s curated clips)."""
    try:
        sample_indices(num_available, src_fps, config.fps, config.num_frames, name)
        return config
    except ValueError:
        if num_available < config.num_frames:
            raise ValueError(f"{name}: {num_available} frames, fewer than num_frames={config.num_frames} "
                             f"(give num_frames={num_available} or less)") from None
    fps = src_fps * (config.num_frames - 1) / max(1, num_available - 1) * (1 + 1e-6)
    return config.replace(fps=min(float(src_fps), fps))


def preview(shards: Sequence[str], out: str | Path, config: PairConfig, index: int = 0, seed: int = 0,
            rows: int = 5, video: bool = False, context: bool | None = None, fit_fps: bool = False) -> list[Path]:
    """Write the pair of the `index`-th sample (epoch 0, `seed`) as PNG (and mp4); returns paths.

    fit_fps: when the clip is too short for `config.fps`, sample it faster (the CLI does this when
    neither --config nor fps= is given, so the defaults work on any curated clip)."""
    import cv2
    from shards.video import write_mp4

    if context is not None:
        config = config.replace(context_prob=1.0 if context else 0.0)
    dataset = PairDataset(shards, config, seed=seed, resample=False)
    count = 0
    for sample in iter_samples(dataset.shards, strict=False, limits=config.read_limits(),
                               allow_pipe=config.allow_pipe):
        if count == index:
            break
        count += 1
    else:
        raise ValueError(f"preview: --index {index} out of range: {count} sample(s) in "
                         f"{len(dataset.shards)} shard(s)")
    if fit_fps:
        info = probe(sample.mp4)
        fitted = fit_fps_to_clip(config, info.num_frames, info.fps, name=f"sample {sample.key}")
        if fitted.fps != config.fps:
            log.warning("preview: sample %s is %d frames at %g fps, too short for %d frames at %g fps: "
                        "sampling at %.3g fps instead", sample.key, info.num_frames, info.fps,
                        config.num_frames, config.fps, fitted.fps)
            config = fitted
            dataset.config = config
    pair = dataset.pair_from_sample(sample, epoch=0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image = preview_image(pair, rows)
    if not cv2.imwrite(str(out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"preview: could not write image {out} (use a .png name)")
    written = [out]
    if video:
        frames = preview_frames(pair)
        frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)))
        written.append(write_mp4(out.with_suffix(".mp4"), frames, fps=config.fps or 5.0))
    return written


def _parse_overrides(items: Sequence[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"override {item!r}: expected key=value (e.g. height=256)")
        k, v = item.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("preview", help="draw one training pair: target | condition + mask | perspective")
    p.add_argument("--shards", nargs="+", required=True, help="shard files, directories or globs")
    p.add_argument("--out", required=True, help="output PNG (the mp4 goes next to it with --video)")
    p.add_argument("--config", help="train config (its data: section) or data YAML")
    p.add_argument("--index", type=int, default=0, help="which sample (in shard order)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", type=int, default=5, help="time steps shown in the PNG")
    p.add_argument("--video", action="store_true", help="also write every frame as an mp4")
    ctx = p.add_mutually_exclusive_group()
    ctx.add_argument("--context", dest="context", action="store_true", default=None,
                     help="force context-aware mode")
    ctx.add_argument("--no-context", dest="context", action="store_false", help="force standard mode")
    p.add_argument("--allow-pipe", action="store_true", help="let pipe:CMD shard URLs run CMD in a shell")
    p.add_argument("overrides", nargs="*", help="data config overrides key=value (e.g. height=256 width=512)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        config = PairConfig.from_yaml(args.config) if args.config else PairConfig()
        overrides = _parse_overrides(args.overrides)
        if args.allow_pipe:
            overrides["allow_pipe"] = True
        if overrides:
            config = PairConfig.from_dict({**config.to_dict(), **overrides}, "overrides")
        written = preview(args.shards, args.out, config, index=args.index, seed=args.seed, rows=args.rows,
                          video=args.video, context=args.context,
                          fit_fps=args.config is None and "fps" not in overrides)
    except (ValueError, FileNotFoundError) as e:  # bad input or a clip that cannot make a pair: one line
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
