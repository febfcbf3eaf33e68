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
