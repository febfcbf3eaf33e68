"""The trainer's configuration: plain dataclasses loaded from YAML, strictly.

An unknown key or a value of the wrong type is an error naming the file and the key, raised
before any work starts. `key=value` overrides from the command line use dotted paths
(`train.steps=10 optim.lr=1e-4 data.num_frames=8`); values are parsed as YAML.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from model.data import PairConfig


@dataclass
class ModelConfig:
    pretrained: str | None = None  # local SVD dir (diffusers layout); null → tiny random SVD
    unet: str | None = None  # a saved UNet to start from (stage 2 ← stage 1's run_dir/unet)
    tiny_block_out_channels: list[int] = field(default_factory=lambda: [32, 64])
    tiny_cross_attention_dim: int = 32
    gradient_checkpointing: bool = True  # diffusers': resnets and spatial transformer blocks
    temporal_checkpointing: bool = True  # also the temporal transformer blocks (with gradient_checkpointing)
    variant: str = "auto"  # weight files: auto (what the directory holds), fp16 (*.fp16.*) or none
    vae_chunk: int = 4  # frames per VAE encoder call (its activations at 512×1024 are ~0.5 GiB a frame)
    tiny_vae_block_out_channels: list[int] = field(default_factory=lambda: [32, 32])  # 2 blocks: ×2 downsampling


@dataclass
class EDMConfig:
    p_mean_start: float = -1.0  # supplement §3.2, stage 1: (P_mean, P_std) = (−1, 1) → (0, 1)
    p_mean_end: float = 0.0
    p_mean_ramp_steps: int | None = None  # null → ramp over all of train.steps
    p_std: float = 1.0
    sigma_cond_mean: float = -3.0  # σ_cond ~ logN(−3, 0.5) (authors' code)
    sigma_cond_std: float = 0.5
    cond_dropout: float = 0.2  # authors' code: CLIP tokens and condition latents dropped together
    motion_bucket_id: float = 127.0
    fps_id: float | None = None  # added time id fps − 1 uses this fps; null → data.fps


@dataclass
class OptimConfig:
    lr: float = 1e-5  # paper supp. §3.2: AdamW, lr 1e-5, batch 16
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.01
    eps: float = 1e-8
    warmup_steps: int = 500
    grad_clip: float = 1.0  # authors' code


@dataclass
class LoopConfig:
    steps: int = 100_000  # optimizer steps
    batch_size: int = 16  # global batch (all ranks × micro batches × accumulation)
    micro_batch_size: int = 1  # per rank per forward
    precision: str = "auto"  # auto: bf16 on GPU, fp32 on CPU
    deepspeed: str = "configs/deepspeed/zero2.json"
    ema_decay: float = 0.9999
    ckpt_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    val_every: int = 5000  # 0 = no periodic validation
    val_clips: int = 1
    val_sampler_steps: int = 25
    val_guidance: list[float] = field(default_factory=lambda: [3.0, 3.0])  # [first, last] frame; equal = constant
    num_workers: int = 4
    prefetch_factor: int = 2  # batches each worker keeps ready (in shared memory: bench/data.py)
    sigma_bins: int = 4  # loss logged per σ quantile bin of logN(P_mean, P_std)


@dataclass
class TrainConfig:
    run_dir: str = "out/train/run"
    shards: list[str] = field(default_factory=list)  # training shard files / dirs / globs
    val_shards: list[str] = field(default_factory=list)  # held-out clips for validation samples
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: PairConfig = field(default_factory=PairConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)

    def __post_init__(self):
        problems = []
        t, o, e = self.train, self.optim, self.edm
        if t.steps < 1:
            problems.append(f"train.steps must be ≥ 1, got {t.steps}")
        if t.micro_batch_size < 1 or t.batch_size < 1:
            problems.append("train.batch_size and train.micro_batch_size must be ≥ 1")
        if t.precision not in ("auto", "bf16", "fp32"):
            problems.append(f"train.precision must be auto, bf16 or fp32, got {t.precision!r}")
        if not 0.0 <= t.ema_decay < 1.0:
            problems.append(f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
        if t.prefetch_factor < 1:
            problems.append(f"train.prefetch_factor must be ≥ 1, got {t.prefetch_factor}")
        if t.ckpt_every < 1 or t.keep_last < 1:
            problems.append("train.ckpt_every and train.keep_last must be ≥ 1")
        if len(t.val_guidance) != 2:
            problems.append(f"train.val_guidance must be [min, max], got {t.val_guidance}")
        if o.lr <= 0 or len(o.betas) != 2:
            problems.append("optim.lr must be > 0 and optim.betas a pair")
        if e.p_std <= 0 or not 0.0 <= e.cond_dropout <= 1.0:
            problems.append("edm.p_std must be > 0 and edm.cond_dropout in [0, 1]")
        if e.fps_id is None and self.data.fps is None:
            problems.append("edm.fps_id must be set when data.fps is null (it is an added time id)")
        if self.model.variant not in ("auto", "fp16", "none"):
            problems.append(f"model.variant must be auto, fp16 or none, got {self.model.variant!r}")
        if self.model.vae_chunk < 1:
            problems.append(f"model.vae_chunk must be ≥ 1, got {self.model.vae_chunk}")
        if not self.shards:
            problems.append("shards: give at least one training shard file, directory or glob")
        if problems:
            raise ValueError("train config: " + "; ".join(problems))

    @property
    def fps_id(self) -> float:
        return float(self.edm.fps_id if self.edm.fps_id is not None else self.data.fps)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "train config") -> "TrainConfig":
        return _build(cls, d, source)

    @classmethod
    def load(cls, path: str | Path, overrides: Sequence[str] = ()) -> "TrainConfig":
        """Read a YAML config and apply `key=value` overrides (dotted keys)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such train config")
        d = yaml.safe_load(path.read_text()) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(d).__name__}")
        for item in overrides:
            apply_override(d, item, source=str(path))
        return cls.from_dict(d, source=str(path))


def apply_override(d: dict, item: str, source: str = "config") -> None:
    """`a.b.c=value` → d['a']['b']['c'] = yaml(value), in place."""
    if "=" not in item:
        raise ValueError(f"override {item!r}: expected key=value")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    node = d
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {item!r}: {p} is not a section of {source}")
    node[parts[-1]] = yaml.safe_load(value)


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return not args or all(_type_ok(v, args[0]) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # aliases we do not know: the dataclass's own checks decide


def _build(cls: type, d: Any, where: str) -> Any:
    """Build dataclass `cls` from mapping `d`, rejecting unknown keys and wrong types."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping for {cls.__name__}, got {type(d).__name__} {d!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} in {cls.__name__}; known: {sorted(names)}")
    kwargs = {}
    for name, value in d.items():
        tp = hints[name]
        key = f"{where}:{name}" if ":" not in where else f"{where}.{name}"
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key)
            continue
        value = _yaml_float(value, tp)
        if not _type_ok(value, tp):
            raise ValueError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        if isinstance(value, int) and tp is float:
            value = float(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None


def _yaml_float(value: Any, tp: Any) -> Any:
    """PyYAML reads `1e-4` (no dot) as a string: accept it where a float is expected."""
    floats = tp is float or float in typing.get_args(tp)
    if floats and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
