"""The clip metadata schema: the `json` member of every shard sample (DESIGN.md, "Shard format").

Validated when written (ShardWriter) and when read (reader, `shards verify`). A change that breaks
old readers bumps SCHEMA_VERSION; readers refuse versions they do not know, with a clear message.
Scores that a filter could not compute are stored as null (NaN has no JSON form and becomes null).
Unknown top-level fields are kept (so a newer writer's extra fields survive a round trip).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA_VERSION = 1
# a sample key, always used with fullmatch (`$` with `.match` would accept a trailing newline)
KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
KEY_MAX_CHARS = 200
EXT_RE = re.compile(r"[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*")
# members of one sample in a shard, and which of them must be present
MEMBERS = ("mp4", "json", "jpg")
# metadata bounds: generous for any real clip, tight enough that arithmetic on them stays finite
MAX_FPS = 1000.0
MIN_FPS = 0.1
MAX_SECONDS = 10.0 * 24 * 3600  # a clip start/end within ten days of video
MAX_FRAMES = 10_000_000
MAX_SIDE = 65536
MAX_JSON_BYTES = 1 << 20
MAX_JSON_DEPTH = 32


class SchemaError(ValueError):
    """Metadata that does not follow the schema; the message names the source and each bad field."""


def clip_key(video_id: str, clip_index: int) -> str:
    """The sample key `{video_id}_{clip_index:04d}`; only [A-Za-z0-9_-] are allowed."""
    if not isinstance(clip_index, int) or isinstance(clip_index, bool) or clip_index < 0:
        raise ValueError(f"clip_index must be an int >= 0, got {clip_index!r}")
    key = f"{video_id}_{clip_index:04d}"
    check_key(key)
    return key


def is_key(key: object) -> bool:
    """The one definition of a valid sample key: 1–200 characters of [A-Za-z0-9_-], nothing else."""
    return isinstance(key, str) and len(key) <= KEY_MAX_CHARS and KEY_RE.fullmatch(key) is not None


def check_key(key: str) -> str:
    if not is_key(key):
        raise ValueError(f"sample key {key!r} must be 1-{KEY_MAX_CHARS} characters of [A-Za-z0-9_-] only")
    return key


def split_member_name(name: str) -> tuple[str, str]:
    """A tar member name → (key, extension), or ValueError: the one definition of a valid member name,
    shared by the reader and `shards verify`. A member is `KEY.EXT` at the top level of the tar: no
    directory part (so no `../` traversal and no absolute path), a valid key, an extension of
    [A-Za-z0-9] parts (lower-cased)."""
    if not isinstance(name, str) or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"member name {name!r}: must be KEY.EXT at the top level (no directories)")
    key, dot, ext = name.partition(".")
    if not dot or EXT_RE.fullmatch(ext) is None:
        raise ValueError(f"member name {name!r}: must be KEY.EXT with an extension of [A-Za-z0-9.]")
    if not is_key(key):
        raise ValueError(f"member name {name!r}: key must be 1-{KEY_MAX_CHARS} characters of [A-Za-z0-9_-]")
    return key, ext.lower()


def loads_bounded(data: bytes | str, where: str = "json", max_bytes: int = MAX_JSON_BYTES,
                  max_depth: int = MAX_JSON_DEPTH):
    """json.loads with the size and nesting depth bounded: ValueError naming `where` otherwise.

    Python's parser recurses per nesting level (a deeply nested document raises RecursionError,
    not ValueError), and code downstream (validation, json.dumps) recurses too: the depth is
    checked after parsing with an explicit stack, and a RecursionError becomes a ValueError.
    """
    size = len(data)
    if size > max_bytes:
        raise ValueError(f"{where}: JSON of {size} bytes is over the limit of {max_bytes} bytes")
    try:
        obj = json.loads(data)
    except RecursionError:
        raise ValueError(f"{where}: JSON nested too deeply (limit {max_depth} levels)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from None
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > max_depth:
                raise ValueError(f"{where}: JSON nested deeper than {max_depth} levels")
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return obj


class ClipMeta(BaseModel):
    """Metadata of one accepted 10-second equirect clip."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: int = SCHEMA_VERSION
    video_id: str = Field(description="source video id, e.g. the YouTube id ([A-Za-z0-9_-])")
    clip_index: int = Field(ge=0, lt=10**8, description="index of the clip within its source video")
    source: str = Field(min_length=1, max_length=4096, description="where the video came from (URL or path)")
    start_s: float = Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False,
                           description="clip start in the source video, seconds")
    end_s: float = Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False, description="clip end in the source video, seconds")
    fps: float = Field(ge=MIN_FPS, le=MAX_FPS, allow_inf_nan=False)
    num_frames: int = Field(gt=0, le=MAX_FRAMES)
    width: int = Field(gt=0, le=MAX_SIDE)
    height: int = Field(gt=0, le=MAX_SIDE)
    category: Optional[str] = Field(default=None, max_length=1000)
    likes: Optional[int] = Field(default=None, ge=0, lt=2**63)
    scores: dict[str, Optional[float]] = Field(default_factory=dict,
                                               description="every filter score; null = not computed")
    config_hash: str = Field(min_length=1, description="hash of the curation config that wrote it")

    @field_validator("video_id")
    @classmethod
    def _video_id(cls, v: str) -> str:
        if not is_key(v):
            raise ValueError(f"must be 1-{KEY_MAX_CHARS} characters of [A-Za-z0-9_-], got {v!r}")
        return v

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is not supported (this code reads {SCHEMA_VERSION})")
        return v

    @field_validator("scores", mode="before")
    @classmethod
    def _nan_is_missing(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: (None if isinstance(s, float) and math.isnan(s) else s) for k, s in v.items()}
        return v

    @field_validator("scores")
    @classmethod
    def _finite_scores(cls, v: dict) -> dict:
        bad = [k for k, s in v.items() if s is not None and not math.isfinite(s)]
        if bad:
            raise ValueError(f"scores must be finite or null; infinite: {', '.join(bad)}")
        return v

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"must be even (H.264 yuv420p), got {v}")
        return v

    @model_validator(mode="after")
    def _interval(self) -> "ClipMeta":
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        return self

    @property
    def key(self) -> str:
        return clip_key(self.video_id, self.clip_index)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, allow_nan=False).encode()

    @classmethod
    def from_json(cls, data: bytes | str, where: str = "json") -> "ClipMeta":
        try:
            obj = loads_bounded(data, where)
        except ValueError as e:
            raise SchemaError(str(e)) from None
        return validate_meta(obj, where)


def _describe(error: dict) -> str:
    field = ".".join(str(p) for p in error["loc"]) or "(record)"
    msg = error["msg"].removeprefix("Value error, ")
    return f"field '{field}': {msg}"


def validate_meta(meta: dict | ClipMeta, where: str = "metadata") -> ClipMeta:
    """`meta` as a ClipMeta, or SchemaError naming `where` and each bad field."""
    if isinstance(meta, ClipMeta):
        return meta
    if not isinstance(meta, dict):
        raise SchemaError(f"{where}: metadata must be a JSON object, got {type(meta).__name__}")
    try:
        return ClipMeta.model_validate(meta)
    except ValidationError as e:
        lines = [_describe(err) for err in e.errors()]
        raise SchemaError(f"{where}: invalid clip metadata: " + "; ".join(lines)) from None
