"""Tiny synthetic clips shared by the shards tests (made in memory; nothing written outside tmp_path)."""
import numpy as np
import pytest


def moving_pattern(num_frames: int = 24, height: int = 32, width: int = 64, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 frames where every frame differs (bars move), so frame identity is testable."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, None, :]
    offset = int(rng.integers(0, height))
    for t in range(num_frames):
        row = (offset + 3 * t) % (height - 4)
        col = (5 * t) % (width - 6)
        frames[t, row:row + 4, :, 1] = 255
        frames[t, :, col:col + 6, 2] = 220
    return frames


@pytest.fixture
def frames():
    return moving_pattern()


def clip_meta(video_id: str = "vid", clip_index: int = 0, **overrides) -> dict:
    """Valid metadata for a `moving_pattern()` clip encoded at 12 fps."""
    meta = dict(video_id=video_id, clip_index=clip_index, source=f"synthetic://{video_id}",
                start_s=2.0 * clip_index, end_s=2.0 * clip_index + 2.0, fps=12.0, num_frames=24,
                width=64, height=32, category="Travel & Events", likes=51,
                scores={"flow": 0.5 + clip_index, "text_area": None}, config_hash="cafe01")
    meta.update(overrides)
    return meta


@pytest.fixture(scope="session")
def mp4_bytes():
    from shards.video import encode_mp4

    return encode_mp4(moving_pattern(), fps=12, keyint_s=0.5)


def write_raw_tar(path, members: dict[str, bytes]) -> None:
    """A tar with exactly these members (name → bytes), for building broken shards."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def make_meta():
    return clip_meta


@pytest.fixture
def raw_tar():
    return write_raw_tar


@pytest.fixture(scope="session")
def jpg_bytes():
    import cv2

    ok, buf = cv2.imencode(".jpg", moving_pattern(num_frames=1)[0])
    assert ok
    return buf.tobytes()


@pytest.fixture
def write_shards(mp4_bytes, jpg_bytes):
    """write_shards(dir, n, per_shard=…) → keys: n valid samples of video 'vid', a few per shard."""
    from shards.writer import ShardWriter

    def write(out_dir, n, per_shard=2, prefix="clips", video_id="vid"):
        keys = []
        with ShardWriter(out_dir, prefix=prefix, max_samples=per_shard) as writer:
            for i in range(n):
                meta = clip_meta(video_id, i)
                key = f"{video_id}_{i:04d}"
                writer.write(key, mp4_bytes, meta, jpg=jpg_bytes)
                keys.append(key)
        return keys

    return write
