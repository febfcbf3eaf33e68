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
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# members of one sample in a shard, and which of them must be present
MEMBERS = ("mp4", "json", "jpg")


class SchemaError(ValueError):
    """Metadata that does not follow the schema; the message names the source and each bad field."""


def clip_key(video_id: str, clip_index: int) -> str:
    """The sample key `{video_id}_{clip_index:04d}`; only [A-Za-z0-9_-] are allowed."""
    if not isinstance(clip_index, int) or isinstance(clip_index, bool) or clip_index < 0:
        raise ValueError(f"clip_index must be an int >= 0, got {clip_index!r}")
    key = f"{video_id}_{clip_index:04d}"
    check_key(key)
    return key


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError(f"sample key {key!r} must be non-empty and use only [A-Za-z0-9_-]")
    return key


class ClipMeta(BaseModel):
    """Metadata of one accepted 10-second equirect clip."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: int = SCHEMA_VERSION
    video_id: str = Field(pattern=KEY_RE.pattern, description="source video id, e.g. the YouTube id")
    clip_index: int = Field(ge=0, description="index of the clip within its source video")
    source: str = Field(min_length=1, description="where the video came from (URL or path)")
    start_s: float = Field(ge=0, description="clip start in the source video, seconds")
    end_s: float = Field(gt=0, description="clip end in the source video, seconds")
    fps: float = Field(gt=0)
    num_frames: int = Field(gt=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    category: Optional[str] = None
    likes: Optional[int] = Field(default=None, ge=0)
    scores: dict[str, Optional[float]] = Field(default_factory=dict,
                                               description="every filter score; null = not computed")
    config_hash: str = Field(min_length=1, description="hash of the curation config that wrote it")

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
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise SchemaError(f"{where}: not valid JSON ({e})") from e
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
