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
# weight files per component, "{v}" = "" or ".fp16" (diffusers / transformers names, whole or sharded)
WEIGHT_FILES = {
    "unet": ("diffusion_pytorch_model{v}.safetensors", "diffusion_pytorch_model{v}.bin",
             "diffusion_pytorch_model{v}.safetensors.index.json", "diffusion_pytorch_model{v}.bin.index.json"),
    "vae": ("diffusion_pytorch_model{v}.safetensors", "diffusion_pytorch_model{v}.bin",
            "diffusion_pytorch_model{v}.safetensors.index.json", "diffusion_pytorch_model{v}.bin.index.json"),
    "image_encoder": ("model{v}.safetensors", "pytorch_model{v}.bin", "model{v}.safetensors.index.json",
                      "pytorch_model{v}.bin.index.json"),
}
VARIANTS = ("auto", "fp16", "none")
LATENT_CHANNELS = 4
SVD_XT_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "train" / "svd_xt"


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


def _find_variant(d: Path, variant: str, kind: str) -> tuple[bool, str | None, str]:
    """(found, variant for from_pretrained, the file names that were looked for)."""
    if variant not in VARIANTS:
        raise ValueError(f"model.variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    names = WEIGHT_FILES[kind]
    tries = {"auto": ("", ".fp16"), "fp16": (".fp16",), "none": ("",)}[variant]
    for v in tries:
        if any((d / n.format(v=v)).is_file() for n in names):
            return True, v.lstrip(".") or None, ""
    return False, None, " or ".join(f"{d.name}/{names[0].format(v=v)}" for v in tries)


def weight_variant(component_dir: str | Path, variant: str = "auto", kind: str = "unet") -> str | None:
    """The `variant` to pass to `from_pretrained` for one component directory, or raise naming
    the weight file that is missing. auto: the plain files when present, else `*.fp16.*`
    (SVD-XT as published holds `diffusion_pytorch_model.fp16.safetensors`, `model.fp16.safetensors`)."""
    d = Path(component_dir)
    found, v, expected = _find_variant(d, variant, kind)
    if not found:
        raise ValueError(f"{d}: no weights: missing {expected} (model.variant={variant})")
    return v


def check_svd_dir(path: str | Path, variant: str = "auto", need_unet_weights: bool = True) -> Path:
    """Raise one clear error unless `path` is an SVD directory in diffusers layout with the config
    and weight files the loader needs (`need_unet_weights=False` when another UNet is swapped in)."""
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
    unet_cfg = _read_json(path / "unet" / "config.json")
    if unet_cfg.get("_class_name") not in (None, "UNetSpatioTemporalConditionModel"):
        raise ValueError(f"{path}/unet is a {unet_cfg.get('_class_name')}, expected UNetSpatioTemporalConditionModel")
    if unet_cfg.get("in_channels", 8) != 2 * LATENT_CHANNELS:
        raise ValueError(f"{path}/unet has in_channels={unet_cfg.get('in_channels')}, expected 8 "
                         "(4 noisy latents + 4 condition latents)")
    missing = []
    for sub in WEIGHT_FILES:
        if sub != "unet" or need_unet_weights:
            found, _, expected = _find_variant(path / sub, variant, sub)
            if not found:
                missing.append(expected)
    if missing:
        raise ValueError(f"{path}: weight files missing: {', '.join(missing)} (model.variant={variant})")
    return path


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON config ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(d).__name__}")
    return d


def check_unet_dir(path: str | Path, variant: str = "auto") -> Path:
    """Raise a clear error unless `path` holds a saved UNetSpatioTemporalConditionModel (config and weights)."""
    path = Path(path)
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ValueError(f"UNet directory {path} has no config.json (expected a `save_pretrained` UNet)")
    if _read_json(cfg).get("_class_name") != "UNetSpatioTemporalConditionModel":
        raise ValueError(f"{cfg} is not a UNetSpatioTemporalConditionModel config")
    weight_variant(path, variant, "unet")
    return path


def _from_pretrained(cls, path: Path, subfolder: str | None, variant: str, kind: str, **kwargs):
    """`cls.from_pretrained` with the variant the directory holds; a load failure (truncated or
    foreign weights) becomes one ValueError naming the directory."""
    where = path / subfolder if subfolder else path
    v = weight_variant(where, variant, kind)
    try:
        if subfolder:
            return cls.from_pretrained(path, subfolder=subfolder, variant=v, **kwargs)
        return cls.from_pretrained(path, variant=v, **kwargs)
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"{where}: cannot load {cls.__name__} ({type(e).__name__}: {first[:300]})") from None


def load_svd(
    path: str | Path,
    unet_path: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    variant: str = "auto",
) -> SVD:
    """Load the SVD parts with `from_pretrained`; `unet_path` swaps in a fine-tuned UNet
    (e.g. the trainer's `unet/`, or stage 1's for stage 2). `variant`: auto (what each directory
    holds: plain weights, else `*.fp16.*`), fp16 or none. Any load error is one ValueError."""
    path = check_svd_dir(path, variant, need_unet_weights=unet_path is None)
    if unet_path is not None:
        unet_path = check_unet_dir(unet_path, variant)
        unet = _from_pretrained(UNetSpatioTemporalConditionModel, unet_path, None, variant, "unet", torch_dtype=dtype)
    else:
        unet = _from_pretrained(UNetSpatioTemporalConditionModel, path, "unet", variant, "unet", torch_dtype=dtype)
    vae = _from_pretrained(AutoencoderKLTemporalDecoder, path, "vae", variant, "vae", torch_dtype=dtype)
    image_encoder = _from_pretrained(CLIPVisionModelWithProjection, path, "image_encoder", variant, "image_encoder",
                                     torch_dtype=dtype)
    feature_extractor = CLIPImageProcessor.from_pretrained(path, subfolder="feature_extractor")
    for m in (unet, vae, image_encoder):
        m.to(device)
    vae.requires_grad_(False).eval()
    image_encoder.requires_grad_(False).eval()
    return SVD(unet, vae, image_encoder, feature_extractor, path)


# --- Memory: checkpointing the temporal transformer blocks too -----------------------------------

def _checkpointed_temporal_forward(self, hidden_states, num_frames, encoder_hidden_states=None):
    plain = type(self).forward
    if self.training and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(plain, self, hidden_states, num_frames, encoder_hidden_states,
                                                 use_reentrant=False)
    return plain(self, hidden_states, num_frames, encoder_hidden_states)


def enable_temporal_checkpointing(unet: torch.nn.Module, enable: bool = True) -> int:
    """Gradient-checkpoint every `TemporalBasicTransformerBlock` of an SVD UNet.

    diffusers' `enable_gradient_checkpointing` recomputes the resnets and the spatial transformer
    blocks but keeps every activation of the temporal blocks (attention over frames at every
    pixel): at 512×1024×25 that is most of what a training step holds (bench/memory.py). The
    forward is replaced on each instance, so parameter names, `state_dict` and `save_pretrained`
    are unchanged. Returns the number of blocks changed."""
    from diffusers.models.attention import TemporalBasicTransformerBlock
    import types

    n = 0
    for m in unet.modules():
        if isinstance(m, TemporalBasicTransformerBlock):
            if enable:
                m.forward = types.MethodType(_checkpointed_temporal_forward, m)
            else:
                m.__dict__.pop("forward", None)
            n += 1
    return n


def svd_xt_configs(root: str | Path = SVD_XT_CONFIGS) -> dict[str, dict]:
    """The published SVD-XT architecture (configs/train/svd_xt/*.json: unet, vae, image_encoder)."""
    root = Path(root)
    return {name: _read_json(root / f"{name}.json") for name in ("unet", "vae", "image_encoder")}


def build_svd_xt_random(dtype: torch.dtype = torch.float32) -> tuple:
    """A randomly initialised full-size SVD-XT (UNet, VAE, CLIP) from the published configs, no
    download. Build it under `torch.device("meta")` or FakeTensorMode to get shapes without memory."""
    cfg = svd_xt_configs()
    clip_cfg = {k: v for k, v in cfg["image_encoder"].items() if k not in ("architectures", "model_type")}
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in `dtype` directly (a cast would copy every weight)
    try:
        unet = UNetSpatioTemporalConditionModel.from_config({k: v for k, v in cfg["unet"].items()
                                                             if not k.startswith("_")})
        vae = AutoencoderKLTemporalDecoder.from_config({k: v for k, v in cfg["vae"].items()
                                                        if not k.startswith("_")})
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**clip_cfg))
    finally:
        torch.set_default_dtype(before)
    return unet, vae, image_encoder


def build_tiny_svd(
    out_dir: str | Path,
    block_out_channels: tuple[int, ...] = (32, 64),
    cross_attention_dim: int = 32,
    num_frames: int = 8,
    vae_block_out_channels: tuple[int, ...] = (32, 32),
    seed: int = 0,
    variant: str | None = None,
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
    # variant="fp16" writes *.fp16.safetensors in fp16, as SVD-XT is published
    for module, sub in ((unet, "unet"), (vae, "vae"), (image_encoder, "image_encoder")):
        (module.half() if variant == "fp16" else module).save_pretrained(out_dir / sub, variant=variant)
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


def check_signed_pixels(pixels: torch.Tensor, what: str) -> None:
    """Refuse integer pixels where [−1, 1] floats are meant: a uint8 pair fed as it is would be
    read as values up to 255 and silently give garbage latents (`model.frames.signed_unit` first)."""
    if not pixels.is_floating_point():
        raise TypeError(f"{what}: expected float pixels in [−1, 1], got {pixels.dtype} "
                        "(convert with model.frames.signed_unit)")


@torch.no_grad()
def vae_encode(vae: AutoencoderKLTemporalDecoder, frames: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """(B, T, 3, H, W) in [−1, 1] → unscaled latent mode (B, T, 4, H/s, W/s), in chunks of frames."""
    check_signed_pixels(frames, "vae_encode")
    b, t = frames.shape[:2]
    flat = frames.flatten(0, 1).to(vae.device, vae.dtype)
    latents = torch.cat([vae.encode(flat[i:i + chunk]).latent_dist.mode() for i in range(0, len(flat), chunk)])
    return latents.unflatten(0, (b, t)).float()


def encode_target(vae: AutoencoderKLTemporalDecoder, frames: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """Clean latents x_0 of the target equirect video: VAE mode × scaling factor (σ_data ≈ 1)."""
    return vae_encode(vae, frames, chunk=chunk) * vae.config.scaling_factor


def condition_noise_mask(mask: torch.Tensor, context_frames: torch.Tensor | int | None = None) -> torch.Tensor:
    """Where condition noise goes: (B,T,1,H,W) float, the visibility mask with the first
    `context_frames` (B,) frames of each sample zeroed (context frames are copied in clean and
    nothing is added outside the mask, as in the authors' code)."""
    m = mask.to(torch.float32)
    if context_frames is None:
        return m
    b, t = m.shape[:2]
    n = torch.as_tensor(context_frames, device=m.device).reshape(-1, 1)
    keep = torch.arange(t, device=m.device).reshape(1, t) >= n.expand(b, 1)
    return m * keep.reshape(b, t, 1, 1, 1).to(m.dtype)


def noisy_condition(
    canvas: torch.Tensor,
    sigma_cond: torch.Tensor,
    noise_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """canvas + σ_cond·ε·noise_mask: `canvas` (B,T,3,H,W) in [−1,1], −1 outside the mask;
    `sigma_cond` (B,); `noise_mask` (B,T,1,H,W) from `condition_noise_mask` (None = everywhere)."""
    check_signed_pixels(canvas, "noisy_condition")
    noise = torch.randn(canvas.shape, generator=generator).to(canvas.device, canvas.dtype)
    if noise_mask is not None:
        noise = noise * noise_mask.to(canvas.device, canvas.dtype)
    return canvas + sigma_cond.to(canvas.device, canvas.dtype).reshape(-1, 1, 1, 1, 1) * noise


def encode_condition(
    vae: AutoencoderKLTemporalDecoder,
    canvas: torch.Tensor,
    sigma_cond: torch.Tensor,
    generator: torch.Generator | None = None,
    noise_mask: torch.Tensor | None = None,
    chunk: int = 16,
) -> torch.Tensor:
    """Condition latents: VAE(canvas + σ_cond·ε·noise_mask) (`noisy_condition`), unscaled like SVD's image latent."""
    return vae_encode(vae, noisy_condition(canvas, sigma_cond, noise_mask, generator), chunk=chunk)


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
    check_signed_pixels(pers, "clip_embeddings")
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
def vae_decode(vae: AutoencoderKLTemporalDecoder, latents: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Scaled latents (B, T, 4, h, w) → frames (B, T, 3, H, W) in [−1, 1] (temporal decoder).

    `chunk`: frames per decoder call; None decodes the whole window at once (diffusers' default):
    the temporal decoder mixes frames, so chunks see fewer neighbours (25 → 8/8/8/1 leaves the
    last frame alone)."""
    b, t = latents.shape[:2]
    chunk = chunk or t
    out = []
    for sample in latents:  # chunks never mix frames of different samples
        z = (sample / vae.config.scaling_factor).to(vae.device, vae.dtype)
        out.append(torch.cat([vae.decode(z[i:i + chunk], num_frames=len(z[i:i + chunk])).sample
                              for i in range(0, t, chunk)]))
    return torch.stack(out).float().clamp(-1, 1)
