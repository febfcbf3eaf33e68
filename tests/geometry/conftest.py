import numpy as np
import pytest


def smooth_equirect(h: int, w: int, seed: int = 0, waves: int = 4, frequency: float = 4.0) -> np.ndarray:
    """A random RGB texture in [0, 1], float32 (h, w, 3), smooth *on the sphere*.

    Each channel is a sum of plane waves sin(k·d + φ) of the unit direction d, so it is
    continuous across the seam and regular at the poles (a texture smooth in equirect pixels
    would spin around the pole, which no view can resolve). Axes as in geometry.rotations.
    """
    rng = np.random.default_rng(seed)
    lon = np.deg2rad((np.arange(w) + 0.5) / w * 360 - 180)
    lat = np.deg2rad(90 - (np.arange(h) + 0.5) / h * 180)
    lon, lat = np.meshgrid(lon, lat)
    d = np.stack([np.cos(lat) * np.sin(lon), -np.sin(lat), np.cos(lat) * np.cos(lon)], -1)
    k = rng.normal(size=(3, waves, 3))
    k *= frequency / np.linalg.norm(k, axis=-1, keepdims=True)
    phase = rng.uniform(0, 2 * np.pi, (3, waves))
    channels = [0.5 + 0.45 / waves * np.sin(d @ k[c].T + phase[c]).sum(-1) for c in range(3)]
    return np.stack(channels, -1).astype(np.float32)


def psnr(a, b, mask=None, peak: float = 1.0) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = (a - b) ** 2
    if mask is not None:
        err = err[np.broadcast_to(mask[..., None], err.shape) if err.ndim == mask.ndim + 1 else mask]
    return float(10 * np.log10(peak**2 / max(err.mean(), 1e-20)))


@pytest.fixture(scope="session")
def texture():
    """128×256 smooth random panorama, float32 (H, W, 3)."""
    return smooth_equirect(128, 256)


@pytest.fixture(scope="session")
def make_texture():
    return smooth_equirect


@pytest.fixture(scope="session", name="psnr")
def psnr_fixture():
    return psnr
