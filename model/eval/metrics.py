"""Video metrics of the paper's Table 1 (main §4 "Metrics", supp. §3.4).

Image quality: PSNR and LPIPS [61], computed only inside the mask of visible directions and
aggregated over frames (supp. §3.4). Temporal coherence: FVD [46] on the full panorama, and
VBench [25] motion smoothness / imaging / aesthetic quality on four square views (front, right,
back, left) extracted from the panorama, because VBench is designed for perspective video.
Imaging quality is VBench's own recipe: pyiqa's MUSIQ with the SPAQ weights, frames resized so
the longer side is ≤ 512, score / 100 averaged over frames.
Geometric consistency (line consistency, EA-score) lives in `model/eval/lines.py`.

Every metric that needs pretrained weights takes them from a local path only (nothing can be
downloaded here); the classes follow the Ray-Data-callable shape: load once in `__init__`,
score in `__call__`.

Videos are numpy (T, H, W, 3) uint8 (as `shards.video.decode_frames` returns them) or float in
[0, 1]; masks are bool (T, H, W) or (H, W) (broadcast over frames).
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "to_unit_float",
    "masked_mse",
    "psnr",
    "LPIPSMetric",
    "frechet_distance",
    "feature_statistics",
    "I3DFeatures",
    "fvd",
    "motion_smoothness",
    "AestheticScorer",
    "resize_longer_side",
    "ImagingQualityScorer",
    "SQUARE_VIEWS",
    "square_views",
]


def to_unit_float(video: np.ndarray, name: str = "video") -> np.ndarray:
    """uint8 [0, 255] or float [0, 1] → float64 [0, 1], shape (..., H, W, 3) checked."""
    video = np.asarray(video)
    if video.ndim < 3 or video.shape[-1] != 3:
        raise ValueError(f"{name}: expected (..., H, W, 3) RGB, got shape {video.shape}")
    if video.dtype == np.uint8:
        return video.astype(np.float64) / 255.0
    if not np.issubdtype(video.dtype, np.floating):
        raise ValueError(f"{name}: expected uint8 or float in [0, 1], got dtype {video.dtype}")
    return video.astype(np.float64)


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt differ in shape: {pred.shape} vs {gt.shape}")


def _broadcast_mask(mask, shape: tuple[int, ...]) -> np.ndarray:
    """Bool mask (T, H, W) / (H, W) → broadcast to the video's (T, H, W, 1)."""
    if mask is None:
        return np.ones(shape[:-1] + (1,), bool)
    mask = np.asarray(mask, bool)
    if mask.shape[-2:] != shape[-3:-1]:
        raise ValueError(f"mask: spatial size {mask.shape[-2:]} does not match the video's {shape[-3:-1]}")
    return np.broadcast_to(mask[..., None], shape[:-1] + (1,))


def masked_mse(pred: np.ndarray, gt: np.ndarray, mask=None) -> float:
    """Mean squared error over the masked pixels of *all* frames pooled (one number per video).

    Pooling over frames (rather than averaging per-frame scores) is what "aggregated across
    frames" means here: frames where little is visible weigh little.
    """
    pred, gt = to_unit_float(pred, "pred"), to_unit_float(gt, "gt")
    _check_pair(pred, gt)
    m = _broadcast_mask(mask, pred.shape)
    count = m.sum() * pred.shape[-1]
    if count == 0:
        raise ValueError("mask: no visible pixel, the masked error is undefined")
    return float((((pred - gt) ** 2) * m).sum() / count)


def psnr(pred: np.ndarray, gt: np.ndarray, mask=None, max_val: float = 1.0) -> float:
    """PSNR = 10·log10(max² / MSE) in dB over the masked pixels of all frames; ∞ when identical."""
    mse = masked_mse(pred, gt, mask)
    return math.inf if mse == 0.0 else 10.0 * math.log10(max_val**2 / mse)


# ----------------------------------------------------------------------------------- LPIPS

ALEXNET_CHECKPOINT = "alexnet-owt-7be5be79.pth"  # the file torchvision caches for AlexNet weights


def _alexnet_weights_path(backbone_weights: str | os.PathLike | None) -> Path | None:
    """The AlexNet ImageNet weights: the given path, else the torch hub cache when it holds them."""
    if backbone_weights is not None:
        path = Path(backbone_weights)
        if not path.is_file():
            raise FileNotFoundError(f"--lpips-weights: {path} is not a file (expected torchvision AlexNet weights)")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_CHECKPOINT
    return cached if cached.is_file() else None


RANDOM_TRUNK_SEED = 0  # LPIPS without AlexNet weights: see LPIPSMetric


class LPIPSMetric:
    """LPIPS (AlexNet, v0.1) averaged over the masked pixels of all frames.

    The `lpips` package ships its calibrated linear layers; the AlexNet trunk comes from
    `backbone_weights` (a torchvision state dict) or the torch hub cache. Without either, the
    trunk is random (`pnet_rand=True`) and a warning says the values are not comparable to the
    paper's: that is what the tests use, since no weights can be downloaded here.
    """

    def __init__(self, backbone_weights=None, device: str = "cpu", pnet_rand: bool | None = None,
                 batch_size: int = 4):
        import lpips  # imported here: it prints a banner and is only needed when scoring

        weights = None if pnet_rand else _alexnet_weights_path(backbone_weights)
        self.random_trunk = weights is None
        if self.random_trunk and not pnet_rand:
            warnings.warn("LPIPS: no AlexNet weights (give --lpips-weights PATH or put "
                          f"{ALEXNET_CHECKPOINT} in {torch.hub.get_dir()}/checkpoints): using a random "
                          "trunk, values are NOT comparable to the paper's", stacklevel=2)
        with warnings.catch_warnings():  # lpips calls torchvision with the deprecated `pretrained=`
            warnings.simplefilter("ignore", UserWarning)
            # a random trunk drawn from a fixed seed: the same scores on every run and for every method
            # compared in one table (unseeded, two runs of one model differed by 0.02), and the caller's
            # global RNG left as it was
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_TRUNK_SEED)
                self.model = lpips.LPIPS(net="alex", spatial=True, pnet_rand=True, verbose=False)
        if weights is not None:
            self._load_trunk(torch.load(weights, map_location="cpu", weights_only=True), weights)
        self.model = self.model.to(device).eval()
        self.device, self.batch_size = device, batch_size

    def _load_trunk(self, state: dict, path: Path) -> None:
        # lpips splits torchvision's alexnet.features into slices that keep the feature indices as
        # module names, so "features.{i}.weight" maps to "slice{k}.{i}.weight".
        own = self.model.net.state_dict()
        mapped = {}
        for key in own:
            index_and_param = key.split(".", 1)[1]  # "sliceK.i.weight" → "i.weight"
            source = f"features.{index_and_param}"
            if source not in state:
                raise ValueError(f"--lpips-weights: {path} lacks {source!r}; not a torchvision AlexNet state dict")
            mapped[key] = state[source]
        self.model.net.load_state_dict(mapped)

    @torch.no_grad()
    def distance_map(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Per-pixel LPIPS distance (T, H, W) between two videos."""
        pred, gt = to_unit_float(pred, "pred"), to_unit_float(gt, "gt")
        _check_pair(pred, gt)
        pred, gt = pred.reshape((-1,) + pred.shape[-3:]), gt.reshape((-1,) + gt.shape[-3:])
        maps = []
        for start in range(0, len(pred), self.batch_size):
            # lpips wants (N, 3, H, W) in [-1, 1]
            a, b = (torch.from_numpy(x[start:start + self.batch_size]).permute(0, 3, 1, 2).float()
                    .mul(2).sub(1).to(self.device) for x in (pred, gt))
            maps.append(self.model(a, b)[:, 0].cpu().numpy())
        return np.concatenate(maps).astype(np.float64)

    def __call__(self, pred: np.ndarray, gt: np.ndarray, mask=None) -> float:
        d = self.distance_map(pred, gt)
        m = _broadcast_mask(mask, d.shape + (1,))[..., 0]
        if m.sum() == 0:
            raise ValueError("mask: no visible pixel, masked LPIPS is undefined")
        return float((d * m).sum() / m.sum())


# ------------------------------------------------------------------------------------- FVD

def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, rowvar=False) of features (N, D)."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features: expected (N ≥ 2, D), got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu_a, cov_a, mu_b, cov_b) -> float:
    """Fréchet distance between N(μa, Σa) and N(μb, Σb) (FVD [46], after FID):

        d² = ‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^{1/2}).
    """
    from scipy import linalg

    mu_a, mu_b = np.atleast_1d(mu_a), np.atleast_1d(mu_b)
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        # singular product (few videos, many features): regularise as in the FID reference code
        eps = 1e-6 * np.eye(len(cov_a))
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real  # sqrtm returns tiny imaginary parts from numerical error
    diff = mu_a - mu_b
    return float(max(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean), 0.0))


class I3DFeatures:
    """I3D video features for FVD from a local TorchScript file (e.g. the `i3d_torchscript.pt`
    used by StyleGAN-V and common FVD code), called as
    `detector(videos (B, 3, T, H, W) in [-1, 1], rescale=False, resize=True, return_features=True)`.
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu", num_frames: int = 16):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--i3d: {path} is not a file (expected an I3D TorchScript model)")
        self.detector = torch.jit.load(str(path), map_location=device).eval()
        self.device, self.num_frames = device, num_frames

    @torch.no_grad()
    def __call__(self, video: np.ndarray) -> np.ndarray:
        """One video (T, H, W, 3) → feature vector (D,), from `num_frames` evenly spaced frames."""
        video = to_unit_float(video)
        idx = np.linspace(0, len(video) - 1, min(self.num_frames, len(video))).round().astype(int)
        x = torch.from_numpy(video[idx]).float().permute(3, 0, 1, 2)[None].mul(2).sub(1).to(self.device)
        feats = self.detector(x, rescale=False, resize=True, return_features=True)
        return feats.reshape(-1).cpu().numpy().astype(np.float64)


def fvd(pred_features: np.ndarray, gt_features: np.ndarray) -> float:
    """FVD between two sets of per-video features (N, D) each."""
    return frechet_distance(*feature_statistics(pred_features), *feature_statistics(gt_features))


# ----------------------------------------------------------------------- VBench-style scores

# The four square views of supp. §3.4, as (name, yaw°): front, right, back, left at pitch 0, FoV 90°.
SQUARE_VIEWS = (("front", 0.0), ("right", 90.0), ("back", 180.0), ("left", -90.0))


def square_views(pano: np.ndarray, size: int | None = None, fov_deg: float = 90.0) -> dict[str, np.ndarray]:
    """The four square perspective videos {name: (T, s, s, 3)} of a panorama video (T, H, W, 3).

    Default side s = H / 2: a 90° view then keeps the panorama's resolution at its centre.
    """
    from geometry import equirect_to_perspective

    size = size or max(pano.shape[-3] // 2, 8)
    return {name: equirect_to_perspective(pano, fov_deg, yaw=yaw, pitch=0.0, roll=0.0, out_hw=(size, size))
            for name, yaw in SQUARE_VIEWS}


def motion_smoothness(video: np.ndarray) -> float:
    """Frame-interpolation proxy of VBench's Motion Smoothness, in [0, 1] (1 = perfectly smooth).

    VBench drops the odd frames, re-creates them with the AMT interpolation network from their
    even neighbours and scores (255 − MAE) / 255 of the re-created frames. AMT weights are not
    available here, so the interpolator is the linear blend (f[t−1] + f[t+1]) / 2. The score has
    VBench's form and range but is *not* numerically comparable to the paper's column: linear
    blending penalises large motion that a flow-based interpolator would reproduce.
    """
    video = to_unit_float(video)
    if len(video) < 3:
        raise ValueError(f"video: motion smoothness needs ≥ 3 frames, got {len(video)}")
    odd = np.arange(1, len(video) - 1, 2)
    interpolated = 0.5 * (video[odd - 1] + video[odd + 1])
    mae = np.abs(interpolated - video[odd]).mean()
    return float(1.0 - mae)  # (255 − MAE₂₅₅) / 255 with values already in [0, 1]


class AestheticScorer:
    """VBench Aesthetic Quality: the LAION aesthetic predictor (a linear head on the L2-normalised
    CLIP image embedding), divided by 10, averaged over frames.

    `clip_dir`: a transformers CLIP model directory (VBench uses ViT-L/14) loaded with
    `from_pretrained`; `head_path`: the linear head's state dict (`weight` (1, D), `bias` (1,)),
    e.g. `sa_0_4_vit_l_14_linear.pth`.
    """

    def __init__(self, clip_dir: str | os.PathLike, head_path: str | os.PathLike, device: str = "cpu",
                 batch_size: int = 8):
        from transformers import CLIPImageProcessor, CLIPModel

        clip_dir, head_path = Path(clip_dir), Path(head_path)
        if not clip_dir.is_dir():
            raise FileNotFoundError(f"--clip: {clip_dir} is not a directory (expected a transformers CLIP model)")
        if not head_path.is_file():
            raise FileNotFoundError(f"--aesthetic-head: {head_path} is not a file (expected the LAION linear head)")
        self.model = CLIPModel.from_pretrained(clip_dir).to(device).eval()
        self.processor = CLIPImageProcessor.from_pretrained(clip_dir)
        state = torch.load(head_path, map_location="cpu", weights_only=True)
        weight = state.get("weight", state.get("linear.weight"))
        bias = state.get("bias", state.get("linear.bias"))
        if weight is None or bias is None:
            raise ValueError(f"--aesthetic-head: {head_path} has no 'weight'/'bias' of a linear layer")
        self.head = torch.nn.Linear(weight.shape[1], 1).to(device)
        self.head.load_state_dict({"weight": weight, "bias": bias})
        if weight.shape[1] != self.model.config.projection_dim:
            raise ValueError(f"--aesthetic-head: input size {weight.shape[1]} ≠ CLIP projection size "
                             f"{self.model.config.projection_dim}")
        self.device, self.batch_size = device, batch_size

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected CLIP image embeddings (N, projection_dim)."""
        pooled = self.model.vision_model(pixel_values=pixel_values).pooler_output
        return self.model.visual_projection(pooled)

    @torch.no_grad()
    def __call__(self, video: np.ndarray) -> float:
        frames = np.asarray(video)
        if frames.dtype != np.uint8:
            frames = (to_unit_float(frames) * 255).round().astype(np.uint8)
        scores = []
        for start in range(0, len(frames), self.batch_size):
            inputs = self.processor(images=list(frames[start:start + self.batch_size]), return_tensors="pt")
            emb = self.image_embeds(inputs["pixel_values"].to(self.device))
            emb = emb / emb.norm(dim=-1, keepdim=True)
            scores.append(self.head(emb)[:, 0].cpu())
        return float(torch.cat(scores).mean() / 10.0)


# ------------------------------------------------------------- VBench imaging quality (MUSIQ)

MUSIQ_CHECKPOINT = "musiq_spaq_ckpt-358bb6af.pth"  # pyiqa's MUSIQ trained on SPAQ: VBench's weights
VBENCH_LONGER_SIDE = 512  # VBench's default "longer" preprocessing of imaging quality


def resize_longer_side(frames: torch.Tensor, max_side: int = VBENCH_LONGER_SIDE) -> torch.Tensor:
    """VBench's "longer" preprocessing: frames (T, 3, H, W) whose longer side exceeds `max_side`
    are resized to (int(s·H), int(s·W)), s = max_side / max(H, W), with torchvision's bilinear
    (antialiased) `Resize`, as `vbench/imaging_quality.py` does on the decoded uint8 frames;
    smaller frames are returned unchanged (never upsampled)."""
    from torchvision.transforms import functional as TF

    h, w = frames.shape[-2:]
    if max(h, w) <= max_side:
        return frames
    scale = max_side / max(h, w)
    return TF.resize(frames, [int(scale * h), int(scale * w)], antialias=True)


class ImagingQualityScorer:
    """VBench Imaging Quality: MUSIQ [Ke et al. 2021] trained on SPAQ, run by pyiqa.

    Per frame: uint8 RGB → longer side ≤ 512 (`resize_longer_side`) → [0, 1] → MUSIQ's predicted
    mean opinion score on SPAQ's 0–100 scale; the video's score is the mean over frames / 100
    (VBench reports it as a fraction: the paper's Imag. column is ≈ 0.4–0.5). The network's
    output is not clipped, so a score can leave [0, 1] slightly.

    `weights`: a local copy of pyiqa's `musiq_spaq_ckpt-358bb6af.pth` (a state dict of
    `pyiqa.archs.musiq_arch.MUSIQ` with its default architecture). It is loaded exactly as VBench
    does (`MUSIQ(pretrained_model_path=…)`), with `pretrained=False` so that pyiqa can never fall
    back to its download URL: pyiqa only downloads when the path is an http(s) URL or when no path
    is given, and the path here is checked to be an existing local file first.
    """

    def __init__(self, weights: str | os.PathLike, device: str = "cpu", batch_size: int = 4):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"--musiq: {path} is not a file (expected pyiqa's MUSIQ-SPAQ weights "
                                    f"{MUSIQ_CHECKPOINT}, as a local path: nothing is downloaded)")
        try:
            from pyiqa.archs.musiq_arch import MUSIQ
        except ImportError as e:
            raise ImportError(f"--musiq: imaging quality needs pyiqa (pip install --no-deps pyiqa==0.1.16): {e}") from e
        try:
            model = MUSIQ(pretrained=False, pretrained_model_path=str(path))
        except Exception as e:  # unpickling / missing or mismatched keys: all mean "not this checkpoint"
            raise ValueError(f"--musiq: {path} is not a state dict of pyiqa's MUSIQ (default architecture, one "
                             f"output: the SPAQ weights {MUSIQ_CHECKPOINT}): {type(e).__name__}: {e}") from None
        self.model = model.to(device).eval()  # eval(): MUSIQ builds its multi-scale patches itself
        self.device, self.batch_size = device, batch_size

    @torch.no_grad()
    def frame_scores(self, video: np.ndarray) -> np.ndarray:
        """MUSIQ scores (T,) of a video (T, H, W, 3), on SPAQ's 0–100 scale."""
        frames = np.asarray(video)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"video: expected (T, H, W, 3) RGB, got shape {frames.shape}")
        if frames.dtype != np.uint8:  # VBench scores decoded uint8 frames: quantise alike
            frames = (np.clip(to_unit_float(frames, "video"), 0, 1) * 255).round().astype(np.uint8)
        frames = resize_longer_side(torch.from_numpy(frames).permute(0, 3, 1, 2))
        scores = [self.model((frames[i:i + self.batch_size].float() / 255.0).to(self.device)).reshape(-1).cpu()
                  for i in range(0, len(frames), self.batch_size)]
        return torch.cat(scores).double().numpy()

    def __call__(self, video: np.ndarray) -> float:
        """The video's imaging quality: mean MUSIQ score over frames / 100."""
        return float(self.frame_scores(video).mean() / 100.0)
