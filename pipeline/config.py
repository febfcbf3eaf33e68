"""The curation config: one YAML per job (configs/curate/*.yaml), read into dataclasses.

Every section is a dataclass; an unknown key anywhere is an error that names its path, so a typo
never silently falls back to a default. `thresholds` stays plain data and is checked by
`pipeline.thresholds.check_rules` (the one place that turns scores into verdicts).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file / key and the problem."""


@dataclass
class InputConfig:
    path: Optional[str] = None  # directory, video file, or manifest (.csv/.jsonl/.parquet)
    min_likes: Optional[float] = None  # keep rows with like_count > min_likes (360-1M: 50)
    limit: Optional[int] = None  # first N rows after filtering (small trial runs)
    extensions: list[str] = field(default_factory=lambda: [".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"])


@dataclass
class DownloadConfig:
    cache_dir: Optional[str] = None  # default: RUN_DIR/downloads (must be shared on multi-node runs)
    retries: int = 3
    backoff_s: float = 2.0  # wait backoff_s * 2**attempt between attempts
    timeout_s: float = 60.0  # per attempt: yt-dlp's socket time-out; an fsspec copy with no data this long is abandoned
    max_height: int = 1080  # tallest stream downloaded (clips are <= 512 high: more is waste)
    format: Optional[str] = None  # a yt-dlp format spec; None: pipeline.download.format_selector(max_height)
    user_agent: str = ""  # empty, as the 360-1M authors' downloader: YouTube then serves equirect, not mesh
    cookies: Optional[str] = None  # a cookies.txt for yt-dlp (when YouTube's bot check trips)
    keep: bool = False  # keep downloaded files once their video is finished
    max_concurrent_per_node: int = 4  # downloads at once on one node (flock'ed slots in the cache)
    breaker_after: int = 20  # consecutive transient failures that stop all downloading (0: never)
    fsspec_schemes: list[str] = field(default_factory=lambda: ["s3", "gs", "gcs", "az", "abfs", "abfss"])


@dataclass
class SampleConfig:
    """Frames sampled from each source video for the video-level filters."""

    num_frames: int = 8
    width: int = 512
    height: int = 256
    max_pixels: int = 8192 * 4096  # a larger declared frame is an error row, never decoded
    seed: int = 0


@dataclass
class ClipConfig:
    duration_s: float = 10.0
    min_duration_s: float = 2.0  # a tail shorter than this is dropped
    height: int = 512  # clip width is 2 * height (equirect)
    max_fps: Optional[float] = 30.0  # higher frame rates are resampled down; None keeps the source rate
    crf: int = 20
    preset: str = "veryfast"
    max_clips_per_video: Optional[int] = None
    analysis_fps: float = 2.0  # frames decoded per second of clip for motion / text / pixels
    analysis_height: int = 256  # their size (width = 2 * height)
    thumbnail_width: int = 256
    ffmpeg_timeout_s: float = 300.0  # one clip's cut + encode; a stuck ffmpeg is killed and becomes an error row
    # fixed (the paper): windows of duration_s from 0 s, a clip holding a cut is rejected (cuts
    # thresholds); cut_aware: the windows laid inside each shot between TransNetV2's cuts
    split: str = "fixed"


@dataclass
class FormatFilterConfig:
    canny_low: int = 50
    canny_high: int = 150
    mid_band: float = 0.02  # a "mid-height" line lies within this fraction of H from H/2
    border_margin: float = 0.15  # a "border" line lies within this fraction of W from an edge
    bar_max_std: float = 8.0  # the strip outside a border line is a bar when its std is below this
    max_angle_deg: float = 2.0


@dataclass
class IntraFrameFilterConfig:
    net: str = "vgg"  # LPIPS backbone, as in the authors' sample code
    weights: str = "random"  # PATH to torchvision's backbone weights (e.g. vgg16-397923af.pth), or random
    num_frames: int = 4
    size: int = 128  # each half is resized to size x size (left/right) or size/2 x 2*size (top/bottom)
    seed: int = 0  # the random backbone's init (reproducible scores)
    threads: int = 1


@dataclass
class MotionFilterConfig:
    width: int = 256  # flow is computed on the equirect resized to width x width/2
    pyr_scale: float = 0.5  # Farnebäck parameters (video2dataset's)
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2
    wrap_pad: float = 0.125  # circular padding (fraction of W) so flow is continuous across the seam


@dataclass
class CutsFilterConfig:
    device: str = "cpu"
    threads: int = 1
    batch_windows: int = 1  # TransNetV2 windows (100 frames each) per forward pass: each adds ~70 MiB on a CPU
    # the cheap first pass (pipeline/filters/cuts.py `quiet`): a 100-frame window whose mean
    # absolute grey difference (0-255, at 48x27) stays below prefilter_step between consecutive
    # frames and below prefilter_span_diff between frames prefilter_span apart skips TransNetV2
    prefilter: bool = False
    prefilter_step: float = 2.0
    prefilter_span_diff: float = 4.0
    prefilter_span: int = 24


@dataclass
class TextFilterConfig:
    num_frames: int = 3
    view_size: int = 256
    fov_deg: float = 90.0
    box_thresh: float = 0.5
    max_line_frac: float = 0.5  # a detected box taller than this share of the view is not a text line
    threads: int = 1
    device: str = "cpu"  # cuda: onnxruntime's CUDA provider (give the stage a GPU in ray.stages.text)


@dataclass
class PixelsFilterConfig:
    black_level: int = 10  # a grey level <= this is "black" (limited-range black decodes to ~0..16)


@dataclass
class FiltersConfig:
    format: FormatFilterConfig = field(default_factory=FormatFilterConfig)
    intra_frame: IntraFrameFilterConfig = field(default_factory=IntraFrameFilterConfig)
    motion: MotionFilterConfig = field(default_factory=MotionFilterConfig)
    cuts: CutsFilterConfig = field(default_factory=CutsFilterConfig)
    text: TextFilterConfig = field(default_factory=TextFilterConfig)
    pixels: PixelsFilterConfig = field(default_factory=PixelsFilterConfig)


@dataclass
class StageResources:
    """Ray resources of one stage. `concurrency: [min, max]` makes a model stage an autoscaling
    actor pool (Ray Data grows it to max while its input queues up and shrinks it back to min) and
    caps a task stage at max tasks at once; `pool: N` is the fixed pool [N, N]."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    pool: int = 0
    batch_size: int = 1
    concurrency: Optional[list[int]] = None

    def size(self) -> Optional[tuple[int, int]]:
        """(min, max) actors / tasks, or None when neither concurrency nor pool is set."""
        if self.concurrency is not None:
            return int(self.concurrency[0]), int(self.concurrency[-1])
        return (self.pool, self.pool) if self.pool > 0 else None


def _default_stages() -> dict[str, StageResources]:
    return {
        "download": StageResources(num_cpus=0.1),  # waits on the network: a small CPU share
        "sample": StageResources(num_cpus=1.0),
        "video_pixels": StageResources(num_cpus=0.5),
        "format": StageResources(num_cpus=0.5, pool=1, batch_size=4),
        "intra_frame": StageResources(num_cpus=0.5, pool=1, batch_size=4),
        "inter_frame": StageResources(num_cpus=0.5),
        "cuts": StageResources(num_cpus=0.5, pool=1),  # TransNetV2 over every frame of a video
        "cut": StageResources(num_cpus=1.0),  # ffmpeg cut + encode of one clip, its analysis frames
        "motion": StageResources(num_cpus=1.0),
        "text": StageResources(num_cpus=0.5, pool=1, batch_size=4),
        "pixels": StageResources(num_cpus=0.5),
        "write": StageResources(num_cpus=0.25, batch_size=16),  # clip decisions + shards, on the workers
    }


@dataclass
class RayConfig:
    address: Optional[str] = None  # None: RAY_ADDRESS when set (ray job submit), else a local Ray
    num_cpus: Optional[int] = None  # local Ray only
    object_store_mb: Optional[int] = None  # local Ray only
    progress_bars: bool = True
    block_kb: int = 32  # Ray Data's target block size: a chunk of ~30-40 clip spans per task
    stages: dict[str, StageResources] = field(default_factory=_default_stages)


@dataclass
class ShardsConfig:
    prefix: str = "clips"
    max_bytes: int = 512 * 2**20


@dataclass
class CurateConfig:
    input: InputConfig = field(default_factory=InputConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    clips: ClipConfig = field(default_factory=ClipConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    thresholds: dict[str, Any] = field(default_factory=dict)
    output: Optional[str] = None

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "CurateConfig":
        config = _build(cls, data, where)
        config.validate(where)
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> "CurateConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must hold a mapping of sections, got {type(data).__name__}")
        return cls.from_dict(data, where=str(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hashed(self) -> dict:
        """Everything that changes what is written (not where it is written, nor on what)."""
        d = self.to_dict()
        d.pop("output", None)
        d["input"].pop("path", None)
        d.pop("ray", None)
        for key in ("cache_dir", "keep", "retries", "backoff_s", "timeout_s", "max_concurrent_per_node",
                    "breaker_after", "cookies"):
            d["download"].pop(key, None)  # how and where it downloads, not what
        return d

    def config_hash(self) -> str:
        return hashlib.sha1(json.dumps(self.hashed(), sort_keys=True, default=str).encode()).hexdigest()[:12]

    def validate(self, where: str = "config") -> "CurateConfig":
        from .thresholds import check_rules  # local import: thresholds imports nothing of ours

        s, c = self.sample, self.clips
        if s.num_frames < 2:
            raise ConfigError(f"{where}: sample.num_frames must be >= 2, got {s.num_frames}")
        if s.width != 2 * s.height or s.height <= 0:
            raise ConfigError(f"{where}: sample size must be W = 2H, got {s.width}x{s.height}")
        if c.duration_s <= 0 or c.min_duration_s <= 0:
            raise ConfigError(f"{where}: clips.duration_s and clips.min_duration_s must be > 0")
        if c.height <= 0 or c.height % 2:
            raise ConfigError(f"{where}: clips.height must be even and > 0 (W = 2H, yuv420p), got {c.height}")
        if c.analysis_height <= 0 or c.analysis_fps <= 0:
            raise ConfigError(f"{where}: clips.analysis_height and clips.analysis_fps must be > 0")
        w = self.filters.intra_frame.weights
        if w != "random" and not Path(w).is_file():
            raise ConfigError(f"{where}: filters.intra_frame.weights: {w}: no such file (give the path to "
                              f"torchvision's {self.filters.intra_frame.net} weights, or `random`)")
        if self.filters.text.device not in ("cpu", "cuda"):
            raise ConfigError(f"{where}: filters.text.device: cpu or cuda, got {self.filters.text.device!r}")
        if not c.ffmpeg_timeout_s > 0:
            raise ConfigError(f"{where}: clips.ffmpeg_timeout_s must be > 0, got {c.ffmpeg_timeout_s}")
        for name, st in self.ray.stages.items():
            if name not in _default_stages():
                raise ConfigError(f"{where}: ray.stages.{name}: unknown stage "
                                  f"(known: {', '.join(_default_stages())})")
            if st.num_cpus < 0 or st.num_gpus < 0 or st.pool < 0 or st.batch_size < 1:
                raise ConfigError(f"{where}: ray.stages.{name}: resources must be >= 0 and batch_size >= 1")
            cc = st.concurrency
            if cc is not None and (len(cc) not in (1, 2) or min(cc) < 1 or cc[0] > cc[-1]):
                raise ConfigError(f"{where}: ray.stages.{name}.concurrency: [min, max] with 1 <= min <= max, got {cc}")
        if c.split not in ("fixed", "cut_aware"):
            raise ConfigError(f"{where}: clips.split: fixed or cut_aware, got {c.split!r}")
        check_rules(self.thresholds, where=f"{where}: thresholds")
        return self

    def stage(self, name: str) -> StageResources:
        return self.ray.stages.get(name) or _default_stages()[name]


def _flat(d: Any, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def changed_keys(old: "CurateConfig", new: "CurateConfig") -> list[str]:
    """The dotted keys whose values differ between two configs (hashed part only)."""
    a, b = _flat(old.hashed()), _flat(new.hashed())
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _build(cls, data: Any, where: str):
    """Instantiate dataclass `cls` from a mapping, recursing into nested dataclass fields."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{where}.{name}" if where else name)
    defaults = cls()
    if cls is RayConfig and "stages" in kwargs:  # stages given are merged over the defaults
        kwargs["stages"] = {**defaults.stages, **kwargs["stages"]}
    return cls(**kwargs)


def _convert(hint, value, where: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, where)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is dict:
        _, vt = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {k: _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        (it,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_convert(it, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if hint is float:
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`section.key=value` strings (value parsed as YAML) applied onto a config mapping."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        dotted, raw = item.split("=", 1)
        node = data
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data
