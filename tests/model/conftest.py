import cv2
import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run ~10× faster on one thread than on two when the 2 cores are shared
    (OpenMP threads spin-wait for a core another process holds)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# (grid size, amplitude) of the random layers summed into a test panorama. Coarse: what survives
# H.264 chroma subsampling in videos the tests encode; fine: trackable corners everywhere.
COARSE_LAYERS = ((8, 1.0), (32, 0.6), (64, 0.3))
FINE_LAYERS = ((8, 1.0), (32, 0.6), (128, 0.4), (256, 0.3))


def multiscale_texture(h: int, w: int, seed: int = 0, fine: bool = False) -> np.ndarray:
    """A random panorama with detail at several scales, uint8 (h, w, 3)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for s, a in FINE_LAYERS if fine else COARSE_LAYERS:
        img += a * cv2.resize(rng.random((max(2, s // 2), s, 3)).astype(np.float32), (w, h),
                              interpolation=cv2.INTER_CUBIC)
    img -= img.min()
    return (img / img.max() * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def make_texture():
    return multiscale_texture
