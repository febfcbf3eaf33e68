"""Intra-frame scores: are the two halves of each frame copies of each other? (supp. §2.1, step 2)

- `lpips_lr`: LPIPS between the left and right halves. Side-by-side stereo and 180° (dual
  fisheye) videos store two near-identical views next to each other: small LPIPS.
- `lpips_tb`: LPIPS between the top and bottom halves (over-under stereo).
Mean over `num_frames` of the sampled frames. The real `lpips` module (VGG, as the authors' code).

Backbone weights are explicit (`filters.intra_frame.weights`): a PATH to torchvision's ImageNet
weights of the backbone (`vgg16-397923af.pth` / `alexnet-owt-7be5be79.pth`, as torch hub stores
them), whose scores match the published thresholds (< 0.05 left/right, < 0.3 top/bottom), or
`random`: a backbone randomly initialised from `seed` (no download possible here); its scores are
still 0 for identical halves and grow with the difference, but on another scale. Which one scored
a row is its `lpips_backbone` column (`pretrained` / `random`), the setting is in `config_hash`, and
the thresholds name the backbone they are for (`backbone:` in a rule), so one run never applies
one backbone's threshold to the other's scores, and every node loads the same backbone whatever
its torch hub cache holds.
"""
from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING
from unittest.mock import patch

import cv2
import numpy as np

from ..config import IntraFrameFilterConfig
from . import add_scores

if TYPE_CHECKING:  # imported at run time only where a model runs: task workers never load torch
    import torch

log = logging.getLogger(__name__)

SCORES = ["lpips_lr", "lpips_tb"]


def backbone_name(weights: str) -> str:
    return "random" if weights == "random" else "pretrained"


def load_backbone_weights(model, path: str) -> int:
    """Copy torchvision's `features.N.*` tensors from `path` into lpips' backbone slices (which hold
    the same modules, numbered the same). Returns the tensors loaded; raises ValueError on none."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    loaded = 0
    for _, block in model.net.named_children():
        for index, module in block.named_children():
            for name in ("weight", "bias"):
                key = f"features.{index}.{name}"
                if key in state and getattr(module, name, None) is not None:
                    param = getattr(module, name)
                    if tuple(state[key].shape) != tuple(param.shape):
                        raise ValueError(f"{path}: {key} has shape {tuple(state[key].shape)}, "
                                         f"the backbone needs {tuple(param.shape)}")
                    param.data.copy_(state[key])
                    loaded += 1
    if not loaded:
        raise ValueError(f"{path}: no `features.N.weight` tensors of the backbone in this file")
    return loaded


def _draw_uniform(count: int, chunk: int = 1 << 22) -> None:
    """Advance the global CPU generator as `uniform_` on `count` floats does (one draw per element,
    serially), through a buffer of at most `chunk` floats."""
    import torch

    buf = torch.empty(min(count, chunk))
    for start in range(0, count, chunk):
        buf[: min(chunk, count - start)].uniform_()


def vgg16_features_only(pretrained: bool = False, **_) -> SimpleNamespace:
    """`torchvision.models.vgg16(weights=None)` as lpips uses it (its `.features` only), with the
    same tensors from the same global RNG state, but without allocating the 124 M-parameter
    classifier that lpips throws away (a 0.5 GiB spike in every LPIPS actor): the classifier's
    construction draws are replayed through a small buffer, so the RNG reaches VGG's init loop in
    the same state. tests/pipeline/test_filters.py checks it tensor for tensor against torchvision."""
    import torch
    from torchvision.models import vgg

    if pretrained:
        raise ValueError("vgg16_features_only builds the random backbone; load weights with load_backbone_weights")
    features = vgg.make_layers(vgg.cfgs["D"])                       # VGG(features): the convs first ...
    for fan_in, fan_out in ((512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)):
        _draw_uniform(fan_in * fan_out)                              # ... then nn.Linear's weight ...
        _draw_uniform(fan_out)                                       # ... and bias reset_parameters
    for m in features.modules():                                    # VGG.__init__'s init, features first
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            torch.nn.init.constant_(m.bias, 0)
    return SimpleNamespace(features=features)


def load_lpips(net: str = "vgg", seed: int = 0, weights: str = "random"):
    """lpips.LPIPS with the backbone given by `weights` (a path, or `random` from `seed`).
    Returns (model, backbone name). lpips' own linear layers ship with the package."""
    import lpips
    import lpips.pretrained_networks as backbones
    import torch

    # VGG (the curation's): the backbone without torchvision's classifier, same random tensors
    torchvision = SimpleNamespace(vgg16=vgg16_features_only) if net == "vgg" else backbones.tv
    with torch.random.fork_rng(devices=[]), patch.object(backbones, "tv", torchvision):
        torch.manual_seed(seed)
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    if weights != "random":
        load_backbone_weights(model, weights)
    return model.eval(), backbone_name(weights)


def halves(frames: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """(T, H, W, 3) uint8 → left, right (T, size, size, 3) and top, bottom (T, size/2, 2·size, 3)."""
    h, w = frames.shape[1:3]
    rs = lambda f, wh: cv2.resize(f, wh, interpolation=cv2.INTER_AREA)
    left = np.stack([rs(f[:, : w // 2], (size, size)) for f in frames])
    right = np.stack([rs(f[:, w // 2: 2 * (w // 2)], (size, size)) for f in frames])
    top = np.stack([rs(f[: h // 2], (2 * size, size // 2)) for f in frames])
    bottom = np.stack([rs(f[h // 2: 2 * (h // 2)], (2 * size, size // 2)) for f in frames])
    return left, right, top, bottom


def to_lpips_input(x: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) → float (T, 3, H, W) in [-1, 1], as lpips expects."""
    import torch

    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class IntraFrameScores:
    """Ray Data callable: loads LPIPS once, adds lpips_lr and lpips_tb."""

    def __init__(self, cfg: IntraFrameFilterConfig, device: str | None = None):
        import torch

        torch.set_num_threads(max(1, cfg.threads))
        cv2.setNumThreads(1)
        self.cfg = cfg
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.backbone = load_lpips(cfg.net, cfg.seed, cfg.weights)
        self.model.to(self.device)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        import torch

        with torch.no_grad():
            d = self.model(to_lpips_input(a).to(self.device), to_lpips_input(b).to(self.device))
        return float(d.mean())

    def scores(self, frames: np.ndarray) -> dict:
        pick = np.linspace(0, len(frames) - 1, min(self.cfg.num_frames, len(frames))).round().astype(int)
        left, right, top, bottom = halves(frames[pick], self.cfg.size)
        return dict(lpips_lr=self.distance(left, right), lpips_tb=self.distance(top, bottom))

    def __call__(self, batch: dict) -> dict:
        batch = add_scores(batch, "intra_frame", SCORES, lambda i: self.scores(batch["frames"][i]))
        batch["lpips_backbone"] = np.full(len(batch["lpips_lr"]), self.backbone, dtype=object)
        return batch
