"""The conditioned Stable Video Diffusion network (paper §3.1–3.2; DESIGN.md "Model conventions").

Loading: `load_svd(dir)` reads a local SVD directory in diffusers layout with `from_pretrained`;
`build_tiny_svd(dir)` writes a tiny random one with the same classes and the same layout, so CPU
runs and tests go through exactly the loading path a user runs with real weights.

Conditioning (the authors' public code, REFERENCE.md "Authors' code"):
- condition latents: the masked equirect canvas + σ_cond·ε, VAE-encoded (distribution mode), left
  unscaled (like SVD's image latent); the UNet sees [noisy latents ‖ condition latents] = 8 channels;
- cross-attention: one CLIP image embedding per perspective frame, (B, T, D);
- added_time_ids = [fps − 1, motion bucket 127, σ_cond];
- condition dropout (classifier-free guidance) zeroes CLIP tokens and condition latents together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

SVD_COMPONENTS = {
    "unet": ("config.json",),
    "vae": ("config.json",),
    "image_encoder": ("config.json",),
    "feature_extractor": ("preprocessor_config.json",),
}
LATENT_CHANNELS = 4


@dataclass
class SVD:
    """The parts of an SVD checkpoint the trainer and the generator use."""

    unet: UNetSpatioTemporalConditionModel
    vae: AutoencoderKLTemporalDecoder
    image_encoder: CLIPVisionModelWithProjection
    feature_extractor: CLIPImageProcessor
    path: Path

    @property
    def vae_scale(self) -> int:
        """Pixels per latent pixel (8 for SVD)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def check_svd_dir(path: str | Path) -> Path:
    """Raise a clear error unless `path` is an SVD directory in diffusers layout."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    missing = [f"{sub}/{name}" for sub, names in SVD_COMPONENTS.items() for name in names
               if not (path / sub / name).is_file()]
    if missing:
        raise ValueError(
            f"{path} is not a Stable Video Diffusion directory in diffusers layout: missing "
            f"{', '.join(missing)} (expected subfolders {', '.join(SVD_COMPONENTS)}, e.g. a local copy of "
            "stabilityai/stable-video-diffusion-img2vid-xt)"
        )
    unet_cfg = json.loads((path / "unet" / "config.json").read_text())
    if unet_cfg.get("_class_name") not in (None, "UNetSpatioTemporalConditionModel"):
        raise ValueError(f"{path}/unet is a {unet_cfg.get('_class_name')}, expected UNetSpatioTemporalConditionModel")
    if unet_cfg.get("in_channels", 8) != 2 * LATENT_CHANNELS:
        raise ValueError(f"{path}/unet has in_channels={unet_cfg.get('in_channels')}, expected 8 "
                         "(4 noisy latents + 4 condition latents)")
    return path


def check_unet_dir(path: str | Path) -> Path:
    """Raise a clear error unless `path` holds a saved UNetSpatioTemporalConditionModel."""
    path = Path(path)
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ValueError(f"UNet directory {path} has no config.json (expected a `save_pretrained` UNet)")
    if json.loads(cfg.read_text()).get("_class_name") != "UNetSpatioTemporalConditionModel":
        raise ValueError(f"{cfg} is not a UNetSpatioTemporalConditionModel config")
    return path


def load_svd(
    path: str | Path,
    unet_path: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> SVD:
    """Load the SVD parts with `from_pretrained`; `unet_path` swaps in a fine-tuned UNet
    (e.g. the trainer's `unet/`, or stage 1's for stage 2)."""
    path = check_svd_dir(path)
    if unet_path is not None:
        unet = UNetSpatioTemporalConditionModel.from_pretrained(check_unet_dir(unet_path), torch_dtype=dtype)
    else:
        unet = UNetSpatioTemporalConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=dtype)
    vae = AutoencoderKLTemporalDecoder.from_pretrained(path, subfolder="vae", torch_dtype=dtype)
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(path, subfolder="image_encoder", torch_dtype=dtype)
    feature_extractor = CLIPImageProcessor.from_pretrained(path, subfolder="feature_extractor")
    for m in (unet, vae, image_encoder):
        m.to(device)
    vae.requires_grad_(False).eval()
    image_encoder.requires_grad_(False).eval()
    return SVD(unet, vae, image_encoder, feature_extractor, path)


def build_tiny_svd(
    out_dir: str | Path,
    block_out_channels: tuple[int, ...] = (32, 64),
    cross_attention_dim: int = 32,
    num_frames: int = 8,
    vae_block_out_channels: tuple[int, ...] = (32, 32),
    seed: int = 0,
) -> Path:
    """Write a tiny random SVD in diffusers layout (unet/ with 8 input channels, vae/,
    image_encoder/, feature_extractor/, scheduler/, model_index.json) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    n = len(block_out_channels)
    unet = UNetSpatioTemporalConditionModel(
        in_channels=2 * LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlockSpatioTemporal",) * (n - 1) + ("DownBlockSpatioTemporal",),
        up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * (n - 1),
        block_out_channels=tuple(block_out_channels),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=3 * 8,  # three added time ids
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        num_attention_heads=tuple(max(1, c // 16) for c in block_out_channels),
        num_frames=num_frames,
    )
    vae = AutoencoderKLTemporalDecoder(
        down_block_types=("DownEncoderBlock2D",) * len(vae_block_out_channels),
        block_out_channels=tuple(vae_block_out_channels),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
    )
    clip_size = 32
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        image_size=clip_size, patch_size=8, projection_dim=cross_attention_dim,
    ))
    feature_extractor = CLIPImageProcessor(
        crop_size={"height": clip_size, "width": clip_size}, size={"shortest_edge": clip_size},
    )
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="v_prediction", interpolation_type="linear", use_karras_sigmas=True,
        sigma_min=0.002, sigma_max=700.0, timestep_type="continuous", timestep_spacing="leading",
    )
    unet.save_pretrained(out_dir / "unet")
    vae.save_pretrained(out_dir / "vae")
    image_encoder.save_pretrained(out_dir / "image_encoder")
    feature_extractor.save_pretrained(out_dir / "feature_extractor")
    scheduler.save_pretrained(out_dir / "scheduler")
    (out_dir / "model_index.json").write_text(json.dumps({
        "_class_name": "StableVideoDiffusionPipeline",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
        "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
    }, indent=2))
    return out_dir


# --- Conditioning helpers ----------------------------------------------------------------------

def sample_sigma_cond(
    n: int, mean: float = -3.0, std: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """σ_cond ~ logN(mean, std) (authors' code: logN(−3, 0.5)), (n,) float32."""
    return (mean + std * torch.randn(n, generator=generator)).exp()


@torch.no_grad()
def vae_encode(vae: AutoencoderKLTemporalDecoder, frames: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """(B, T, 3, H, W) in [−1, 1] → unscaled latent mode (B, T, 4, H/s, W/s), in chunks of frames."""
    b, t = frames.shape[:2]
    flat = frames.flatten(0, 1).to(vae.device, vae.dtype)
    latents = torch.cat([vae.encode(flat[i:i + chunk]).latent_dist.mode() for i in range(0, len(flat), chunk)])
    return latents.unflatten(0, (b, t)).float()


def encode_target(vae: AutoencoderKLTemporalDecoder, frames: torch.Tensor) -> torch.Tensor:
    """Clean latents x_0 of the target equirect video: VAE mode × scaling factor (σ_data ≈ 1)."""
    return vae_encode(vae, frames) * vae.config.scaling_factor


def encode_condition(
    vae: AutoencoderKLTemporalDecoder,
    canvas: torch.Tensor,
    sigma_cond: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Condition latents: VAE(canvas + σ_cond·ε), unscaled like SVD's image latent.

    `canvas`: (B, T, 3, H, W) in [−1, 1], −1 outside the mask; `sigma_cond`: (B,).
    """
    noise = torch.randn(canvas.shape, generator=generator).to(canvas.device, canvas.dtype)
    noisy = canvas + sigma_cond.to(canvas.device, canvas.dtype).reshape(-1, 1, 1, 1, 1) * noise
    return vae_encode(vae, noisy)


@torch.no_grad()
def clip_embeddings(
    image_encoder: CLIPVisionModelWithProjection,
    feature_extractor: CLIPImageProcessor,
    pers: torch.Tensor,
) -> torch.Tensor:
    """One CLIP image embedding per perspective frame: (B, T, 3, h, w) in [−1, 1] → (B, T, D).

    Same preprocessing as diffusers' SVD pipeline (antialiased resize in [−1, 1], then CLIP
    mean/std), done in torch so it runs on batches.
    """
    b, t = pers.shape[:2]
    size = image_encoder.config.image_size
    x = F.interpolate(pers.flatten(0, 1).float(), size=(size, size), mode="bilinear", antialias=True,
                      align_corners=False)
    x = (x.clamp(-1, 1) + 1) / 2
    mean = torch.tensor(feature_extractor.image_mean, device=x.device).reshape(1, 3, 1, 1)
    std = torch.tensor(feature_extractor.image_std, device=x.device).reshape(1, 3, 1, 1)
    x = ((x - mean) / std).to(image_encoder.device, image_encoder.dtype)
    return image_encoder(pixel_values=x).image_embeds.unflatten(0, (b, t)).float()


def added_time_ids(sigma_cond: torch.Tensor, fps: float, motion_bucket_id: float = 127.0) -> torch.Tensor:
    """(B, 3) = [fps − 1, motion bucket, σ_cond] per sample (SVD micro-conditioning)."""
    n = sigma_cond.shape[0]
    fixed = torch.tensor([fps - 1.0, motion_bucket_id], dtype=torch.float32).expand(n, 2)
    return torch.cat([fixed, sigma_cond.float().cpu().reshape(n, 1)], dim=1).to(sigma_cond.device)


def drop_conditions(
    clip_emb: torch.Tensor,
    cond_latents: torch.Tensor,
    p: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Classifier-free guidance dropout: with probability p per sample, zero both the CLIP tokens
    and the condition latents (the authors drop them together). Returns (clip, cond, kept (B,))."""
    keep = torch.rand(clip_emb.shape[0], generator=generator) >= p
    k = keep.to(clip_emb.device)
    return (clip_emb * k.reshape(-1, 1, 1).to(clip_emb.dtype),
            cond_latents * k.reshape(-1, 1, 1, 1, 1).to(cond_latents.dtype), keep)


def unet_fn(
    unet: torch.nn.Module,
    cond_latents: torch.Tensor,
    clip_emb: torch.Tensor,
    time_ids: torch.Tensor,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """F_θ(x_in, c_noise) of eq. 2: the UNet on [c_in·y ‖ condition latents] (8 channels).

    Works for a plain UNet and for a DeepSpeed engine wrapping one (both are callables).
    """
    def F_theta(x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        dtype = cond_latents.dtype
        sample = torch.cat([x_in.to(dtype), cond_latents], dim=2)
        out = unet(sample, c_noise.to(sample.device), encoder_hidden_states=clip_emb,
                   added_time_ids=time_ids, return_dict=False)[0]
        return out.float()
    return F_theta


@torch.no_grad()
def vae_decode(vae: AutoencoderKLTemporalDecoder, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Scaled latents (B, T, 4, h, w) → frames (B, T, 3, H, W) in [−1, 1] (temporal decoder)."""
    b, t = latents.shape[:2]
    flat = (latents.flatten(0, 1) / vae.config.scaling_factor).to(vae.device, vae.dtype)
    frames = [vae.decode(flat[i:i + chunk], num_frames=len(flat[i:i + chunk])).sample
              for i in range(0, len(flat), chunk)]
    return torch.cat(frames).unflatten(0, (b, t)).float().clamp(-1, 1)
