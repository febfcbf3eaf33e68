"""Perspective video → 360° video (paper §3.3): the generation command, top to bottom.

    python -m model.generate --model DIR --input VIDEO --output DIR [--fov H[,V]]
        [--poses poses.json | --estimate-poses | --static] [--frames N] [--steps K]
        [--guidance G | MIN,MAX] [--height H] [--window T] [--context S] [--blend-band F] …

1. Check every input before any work (video readable, FoV in (0°, 180°), poses matching the
   frame count, a model directory with a trained UNet, sizes the networks can take).
2. Poses: read a poses JSON (`model.poses`), or estimate rotations from the video (default),
   aligned to the first frame (view-based frame alignment, §3.3), or `--static` (all at the centre).
3. Condition canvas: each frame projected into the H×2H equirect at its pose, black outside its
   mask (`geometry.perspective_to_equirect`), at the equirect's own pixel density.
4. Windows of T frames; window k > 0 starts T − S frames after window k − 1 and takes the last S
   frames it generated as fully visible context (§3.3 "Long Video Generation"). The input is
   padded by repeating its last frame so the windows tile it; padded frames are dropped.
5. Per window: condition latents VAE(canvas + σ_cond·ε), one CLIP embedding per frame,
   added_time_ids [fps − 1, 127, σ_cond] (`model.network`); EDM Euler sampling
   (`model.edm` preconditioning and step) on the Karras σ schedule of the model's diffusers
   `EulerDiscreteScheduler`, classifier-free guidance constant over the frames by default
   (3, as the authors sample: every Argus frame is conditioned alike, so SVD's 1 → 3 ramp would
   leave frame 0 of each window unguided; a ramp is an option), unconditional = zero CLIP tokens
   and zero condition latents, as in training dropout; condition noise only inside the mask,
   context frames clean (as in training);
   optionally the latents (and condition) rolled by W/4 after every step, undone at the end.
6. Blended decoding (eqs. 4–5): decode the latents and the latents rolled by W/2, roll the
   second back, and blend Y = h·Y + (1 − h)·Y′ with h the distance to the seam (`blend_weights`).
7. Write `panorama.mp4` (tagged as a 360° equirect video), `condition.mp4` (the canvas with the
   mask outline), `mask.mp4`, `preview.png`, `poses.json` and `generation.json`.

Model directory (`--model`): either a full SVD directory in diffusers layout whose `unet/` is the
trained UNet, or a train run directory (`model/train.py` writes the final UNet to RUN/unet) — its
other parts come from `--base SVD_DIR`, else from the run's `config.yaml` (`model.pretrained`),
else from RUN/tiny_svd (the tiny random model of a CPU run). A run's `config.yaml` also gives the
defaults for height, window T, context S, fps and the added time ids, so generation matches
training; command-line options override them.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from model import edm
from model.frames import native_render_hw, outlined, resize_frames, to_signed_unit, to_uint8
from shards.video import MAX_FRAME_PIXELS, MAX_VIDEO_PIXELS

log = logging.getLogger("model.generate")


# ------------------------------------------------------------------------------------- config
@dataclass
class GenerateConfig:
    """Everything that decides a generation (written to generation.json)."""

    height: int = 512                 # equirect H (W = 2H); stage 2 trains at 512×1024
    window: int = 25                  # T: frames per window (SVD-XT)
    context: int = 5                  # S: generated frames reused as context by the next window
    steps: int = 25                   # Euler steps (SVD-XT: 25–30)
    guidance: tuple[float, float] = (3.0, 3.0)  # (first, last frame): constant = the authors' sampling
    fps: float | None = 5.0           # input sampled at this rate (training clips: 5 fps); None = native
    fps_id: float | None = None       # the added time id's fps (None = the sampling rate)
    motion_bucket_id: float = 127.0
    sigma_cond: float = 0.02          # condition noise augmentation (SVD's default; training logN(−3, 0.5))
    blend: bool = True                # blended decoding (eqs. 4–5)
    blend_band: float = 0.5           # ramp width each side of the seam, as a fraction of W (0.5 = paper)
    latent_roll: bool = False         # roll latents by W/4 after every step (authors' code option)
    seed: int = 0
    decode_chunk: int | None = None   # frames per VAE decode call; None = the whole window (diffusers)
    variant: str = "auto"             # weight files: auto | fp16 | none (model.network.load_svd)

    def __post_init__(self):
        self.guidance = tuple(float(g) for g in self.guidance)
        problems = []
        if self.height < 2 or self.height % 2:
            problems.append(f"--height must be even and ≥ 2, got {self.height}")
        if self.window < 2:
            problems.append(f"--window must be ≥ 2 frames, got {self.window}")
        if not 0 <= self.context < self.window:
            problems.append(f"--context must be in [0, window={self.window}), got {self.context}")
        if self.steps < 1:
            problems.append(f"--steps must be ≥ 1, got {self.steps}")
        if len(self.guidance) != 2 or not all(math.isfinite(g) and g >= 0 for g in self.guidance):
            problems.append(f"--guidance must be MIN,MAX ≥ 0, got {self.guidance}")
        if self.fps is not None and not self.fps > 0:
            problems.append(f"--fps must be > 0 (or 'native'), got {self.fps}")
        if not 0 < self.blend_band <= 0.5:
            problems.append(f"--blend-band must be in (0, 0.5] of the width, got {self.blend_band}")
        if not self.sigma_cond >= 0:
            problems.append(f"--sigma-cond must be ≥ 0, got {self.sigma_cond}")
        if self.decode_chunk is not None and self.decode_chunk < 1:
            problems.append(f"--decode-chunk must be ≥ 1, got {self.decode_chunk}")
        if self.variant not in ("auto", "fp16", "none"):
            problems.append(f"--variant must be auto, fp16 or none, got {self.variant!r}")
        if problems:
            raise ValueError("; ".join(problems))


# ------------------------------------------------------------------------------- the model dir
@dataclass
class ModelPaths:
    svd_dir: Path                     # VAE, image encoder, feature extractor, scheduler
    unet_dir: Path                    # the trained UNet (save_pretrained layout)
    run_config: dict = field(default_factory=dict)  # the train run's config.yaml, when there is one


def _has_weights(unet_dir: Path, variant: str = "auto") -> bool:
    from model.network import weight_variant

    try:
        weight_variant(unet_dir, variant, "unet")
    except ValueError:
        return False
    return True


def resolve_model(model: str | Path, base: str | Path | None = None, variant: str = "auto") -> ModelPaths:
    """Where the trained UNet and the other SVD parts are (see the module docstring); raises a
    clear error when the UNet or any part is missing."""
    import yaml

    from model.network import check_svd_dir, check_unet_dir

    model = Path(model)
    if not model.is_dir():
        raise FileNotFoundError(f"--model {model}: no such directory")
    unet_dir = model / "unet" if (model / "unet").is_dir() else model
    if not (unet_dir / "config.json").is_file() or not _has_weights(unet_dir, variant):
        raise ValueError(f"--model {model}: no trained UNet (expected {model}/unet/config.json and "
                         "diffusion_pytorch_model.safetensors, as model/train.py saves them)")
    check_unet_dir(unet_dir, variant)
    run_config = {}
    if (model / "config.yaml").is_file():
        run_config = yaml.safe_load((model / "config.yaml").read_text()) or {}
    if base is not None:
        svd_dir = Path(base)
    elif (model / "vae").is_dir():
        svd_dir = model
    elif (run_config.get("model") or {}).get("pretrained"):
        svd_dir = Path(run_config["model"]["pretrained"])
    elif (model / "tiny_svd").is_dir():
        svd_dir = model / "tiny_svd"
    else:
        raise ValueError(f"--model {model}: holds a UNet but no VAE / image encoder: pass --base SVD_DIR "
                         "(the SVD directory it was fine-tuned from)")
    try:
        check_svd_dir(svd_dir, variant, need_unet_weights=False)  # its UNet is replaced by unet_dir
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"--base: {e}") from None
    return ModelPaths(svd_dir, unet_dir, run_config)


def size_multiple(paths: ModelPaths) -> int:
    """Equirect heights must be multiples of this: VAE factor × UNet downsampling (from the configs)."""
    vae = json.loads((paths.svd_dir / "vae" / "config.json").read_text())
    unet = json.loads((paths.unet_dir / "config.json").read_text())
    return 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1) * 2 ** (len(unet.get("block_out_channels", [0] * 4)) - 1)


def config_defaults(run_config: dict) -> dict:
    """GenerateConfig fields taken from a train run's config.yaml (so generation matches training)."""
    data, e = run_config.get("data") or {}, run_config.get("edm") or {}
    out = {}
    if data.get("height"):
        out["height"] = int(data["height"])
    if data.get("num_frames"):
        out["window"] = int(data["num_frames"])
    if "context_frames" in data:
        out["context"] = int(data["context_frames"])
    if "fps" in data:
        out["fps"] = data["fps"]
    for key in ("fps_id", "motion_bucket_id"):
        if e.get(key) is not None:
            out[key] = float(e[key])
    return out


# ------------------------------------------------------------------------------------ windows
@dataclass(frozen=True)
class Window:
    index: int
    start: int    # first frame (of the padded sequence)
    stop: int     # one past the last frame
    context: int  # leading frames taken from the previous window's output (0 for the first)


def plan_windows(num_frames: int, window: int, context: int) -> list[Window]:
    """Windows of T frames, each starting T − S after the previous, covering num_frames.

    n = 1 + ⌈max(0, N − T) / (T − S)⌉ windows; the last one ends at T + (n − 1)(T − S) ≥ N (the
    input is padded to that length).
    """
    if num_frames < 1:
        raise ValueError(f"plan_windows: need at least one frame, got {num_frames}")
    if not 0 <= context < window:
        raise ValueError(f"plan_windows: need 0 ≤ context < window, got context={context}, window={window}")
    stride = window - context
    n = 1 + math.ceil(max(0, num_frames - window) / stride)
    return [Window(k, k * stride, k * stride + window, context if k else 0) for k in range(n)]


# ----------------------------------------------------------------------------------- sampling
def guidance_ramp(num_frames: int, g_min: float, g_max: float) -> torch.Tensor:
    """Per-frame guidance scale (T,), linear from g_min (first frame) to g_max (last); equal
    values (the default, 3) give constant guidance as the authors sample; (1, 3) is SVD's ramp."""
    return torch.linspace(g_min, g_max, num_frames)


def scheduler_sigmas(svd_dir: Path, steps: int) -> torch.Tensor:
    """The σ schedule (steps + 1,), ending in 0, of the model's diffusers EulerDiscreteScheduler
    (Karras σ from σ_max 700 to σ_min 0.002 for SVD); SVD's settings if it has no scheduler/."""
    from diffusers import EulerDiscreteScheduler

    if (Path(svd_dir) / "scheduler" / "scheduler_config.json").is_file():
        sched = EulerDiscreteScheduler.from_pretrained(svd_dir, subfolder="scheduler")
    else:
        sched = EulerDiscreteScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction",
            use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0, timestep_type="continuous",
            timestep_spacing="leading", interpolation_type="linear")
    sched.set_timesteps(steps)
    return sched.sigmas.to(torch.float32)


def guided_denoiser(unet, cond: torch.Tensor, clip: torch.Tensor, ids: torch.Tensor,
                    guidance: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    """D(x, σ, shift): eq. 2 denoiser with per-frame classifier-free guidance (T,).

    The unconditional branch zeroes the CLIP tokens and the condition latents (the training
    dropout); both branches run as one batch. `shift` rolls the condition latents along the width
    to follow latents rolled between steps. With guidance ≡ 1 only the conditional branch runs.
    """
    from model.network import unet_fn

    T = cond.shape[1]
    g = guidance.to(cond.device, torch.float32).reshape(1, T, 1, 1, 1)
    only_cond = bool(torch.all(guidance == 1.0))
    rolled: dict[int, Callable] = {}

    def F_for(shift: int):
        if shift not in rolled:
            c = torch.roll(cond, shift, dims=-1)
            if only_cond:
                rolled[shift] = unet_fn(unet, c, clip, ids)
            else:
                both = unet_fn(unet, torch.cat([torch.zeros_like(c), c]), torch.cat([torch.zeros_like(clip), clip]),
                               torch.cat([ids, ids]))

                def F_guided(x_in, c_noise, both=both):
                    f_u, f_c = both(torch.cat([x_in, x_in]), torch.cat([c_noise, c_noise])).chunk(2)
                    return f_u + g * (f_c - f_u)  # D is affine in F, so this guides the denoised latents too
                rolled[shift] = F_guided
        return rolled[shift]

    def D(x, sigma, shift=0):
        return edm.denoise(F_for(shift), x, sigma)
    return D


def sample_latents(D, noise: torch.Tensor, sigmas: torch.Tensor, roll: int = 0,
                   callback: Callable[[int], None] | None = None) -> torch.Tensor:
    """EDM Euler (Karras et al. Alg. 2 without the 2nd-order step), `edm.euler_step` per σ.

    `roll` > 0 rolls the latents by that many columns after every step (the panorama turns, so
    the seam falls on different content each step) and rolls them back at the end.
    """
    x = noise * edm.initial_noise_scale(float(sigmas[0]))
    shift = 0
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        sigma = torch.full((x.shape[0],), s, device=x.device, dtype=torch.float32)
        x = edm.euler_step(x, D(x, sigma, shift), s, s_next)
        if roll and i < len(sigmas) - 2:
            x = torch.roll(x, roll, dims=-1)
            shift = (shift + roll) % x.shape[-1]
        if callback is not None:
            callback(i)
    return torch.roll(x, -shift, dims=-1)


# ------------------------------------------------------------------------------------ decoding
def blend_weights(width: int, band: float = 0.5) -> torch.Tensor:
    """h(x) (W,) at pixel centres x = j + ½: 1 far from the seam, → 0 at the ±180° edges.

    h(x) = min(1, min(x, W − x) / (band·W)). With band = ½ this is the paper's eq. 5,
    h_W(x) = 1 − 2|x/W − ½|; band = ¼ or 1/16 blend only near the seam (the authors' code).
    """
    if not 0 < band <= 0.5:
        raise ValueError(f"blend band must be in (0, 0.5] of the width, got {band}")
    x = torch.arange(width, dtype=torch.float64) + 0.5
    return (torch.minimum(x, width - x) / (band * width)).clamp(max=1.0).to(torch.float32)


def blended_decode(decode: Callable[[torch.Tensor], torch.Tensor], latents: torch.Tensor,
                   band: float = 0.5) -> torch.Tensor:
    """Eq. 4: Y = h·Y + (1 − h)·Y′ with Y = decode(z), Y′ = decode(z rolled by w/2) rolled back.

    Y′ has its seam in the middle of the image, where h = 1, so each output pixel comes mostly
    from a decoding in which it lies far from the decoder's image border.
    """
    w = latents.shape[-1]
    if w % 2:
        raise ValueError(f"blended decoding needs an even latent width, got {w}")
    Y = decode(latents)
    W = Y.shape[-1]
    Y_rolled = torch.roll(decode(torch.roll(latents, w // 2, dims=-1)), -W // 2, dims=-1)
    h = blend_weights(W, band).to(Y.device, Y.dtype)
    return h * Y + (1 - h) * Y_rolled


def seam_discontinuity(frames: torch.Tensor) -> float:
    """Mean absolute difference between the columns either side of ±180° (the last and the first)."""
    return float((frames[..., 0] - frames[..., -1]).abs().mean())


def column_step(frames: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring columns inside the image (a scale for the seam)."""
    return float((frames[..., 1:] - frames[..., :-1]).abs().mean())


# --------------------------------------------------------------------------- one whole video
def condition_canvas(pers: np.ndarray, poses, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, h, w, 3) uint8 frames into H×2H canvases at their poses: (canvas uint8, mask bool).

    Frames are first resized to the equirect's own pixel density at the view centre, so the
    projection neither aliases a large input nor invents detail (as for training pairs).
    """
    from geometry import perspective_to_equirect

    fov = poses.fov_pair(pers.shape[1:3])
    small = resize_frames(pers, native_render_hw(fov, (height, 2 * height)))
    canvas, mask = perspective_to_equirect(small, fov, yaw=poses.yaw, pitch=poses.pitch, roll=poses.roll,
                                           out_hw=(height, 2 * height))
    return canvas, mask


def _pad(x, length: int):
    """Repeat the last frame so x has `length` frames."""
    if len(x) >= length:
        return x
    reps = [x[-1:]] * (length - len(x))
    return np.concatenate([x, *reps]) if isinstance(x, np.ndarray) else torch.cat([x, *reps])


@torch.no_grad()
def generate_panorama(svd, pers: np.ndarray, poses, cfg: GenerateConfig, sigmas: torch.Tensor,
                      fps_id: float, trace: list | None = None, progress: bool = False) -> dict:
    """(N, h, w, 3) uint8 perspective frames + poses → dict(panorama (N, H, 2H, 3) uint8,
    canvas (N, H, 2H, 3) uint8, mask (N, H, 2H) bool, windows, seam (plain/blended measures)).

    `trace`, when a list, receives per window: the window, its condition pixels (T, 3, H, W) in
    [−1, 1] and its decoded frames, for tests and inspection.
    """
    from tqdm import tqdm

    from model.network import added_time_ids, clip_embeddings, condition_noise_mask, encode_condition, vae_decode

    device, dtype = svd.unet.device, svd.unet.dtype
    N, T, S, H = len(pers), cfg.window, cfg.context, cfg.height
    canvas, mask = condition_canvas(pers, poses, H)
    windows = plan_windows(N, T, S)
    L = windows[-1].stop
    canvas_px = to_signed_unit(_pad(canvas, L))  # (L, 3, H, W) in [−1, 1], −1 (black) outside the mask
    mask_px = torch.from_numpy(np.ascontiguousarray(_pad(mask, L)))[:, None]  # (L, 1, H, W) bool
    clip_size = svd.image_encoder.config.image_size
    pers_px = to_signed_unit(_pad(resize_frames(pers, (clip_size, clip_size)), L))
    out = torch.zeros_like(canvas_px)
    guidance = guidance_ramp(T, *cfg.guidance)
    sigma_cond = torch.full((1,), float(cfg.sigma_cond))
    ids = added_time_ids(sigma_cond, fps_id, cfg.motion_bucket_id).to(device, dtype)
    latent_hw = (H // svd.vae_scale, 2 * H // svd.vae_scale)
    roll = latent_hw[1] // 4 if cfg.latent_roll else 0

    def decode(z):
        return vae_decode(svd.vae, z, chunk=cfg.decode_chunk)

    bar = tqdm(total=len(windows) * cfg.steps, desc="generating", unit="step", disable=not progress)
    seams = []
    for w in windows:
        cond_px = canvas_px[w.start:w.stop].clone()
        if w.context:  # the previous window's last S generated frames, fully visible
            cond_px[:w.context] = out[w.start:w.start + w.context]
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + w.index)
        # noise inside the mask only, none on the (clean, fully visible) context frames
        noise_mask = condition_noise_mask(mask_px[w.start:w.stop][None], w.context)
        cond = encode_condition(svd.vae, cond_px[None].to(device, svd.vae.dtype), sigma_cond.to(device), gen,
                                noise_mask=noise_mask)
        clip = clip_embeddings(svd.image_encoder, svd.feature_extractor, pers_px[w.start:w.stop][None].to(device))
        D = guided_denoiser(svd.unet, cond.to(dtype), clip.to(dtype), ids, guidance)
        noise = torch.randn((1, T, cond.shape[2], *latent_hw), generator=gen).to(device)
        latents = sample_latents(D, noise, sigmas.to(device), roll, callback=lambda i: bar.update(1))
        frames = (blended_decode(decode, latents, cfg.blend_band) if cfg.blend else decode(latents))[0].cpu()
        seams.append(seam_discontinuity(frames))
        out[w.start + w.context:w.stop] = frames[w.context:]
        if trace is not None:
            trace.append({"window": w, "condition": cond_px, "noise_mask": noise_mask[0], "frames": frames,
                          "latents": latents.cpu()})
    bar.close()
    panorama = to_uint8(out[:N])
    return {"panorama": panorama, "canvas": canvas, "mask": mask, "windows": windows,
            "seam": float(np.mean(seams))}


# ------------------------------------------------------------------------------------- outputs
def preview_grid(canvas: np.ndarray, mask: np.ndarray, panorama: np.ndarray, rows: int = 4) -> np.ndarray:
    """A few frames (evenly spaced): condition canvas with the mask outline | generated panorama."""
    T, H, W, _ = panorama.shape
    gap = np.full((H, max(2, W // 64), 3), 255, np.uint8)
    lines = []
    shown = np.unique(np.linspace(0, T - 1, min(rows, T)).round().astype(int))
    for c, t in zip(outlined(canvas[shown], mask[shown]), shown):
        lines.append(np.concatenate([c, gap, panorama[t]], axis=1))
        lines.append(np.full((max(2, H // 32), lines[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(lines[:-1], axis=0)


# ---------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="SVD dir with the trained unet/, or a train run dir")
    p.add_argument("--base", help="SVD dir for the VAE / image encoder when --model is a train run dir")
    p.add_argument("--input", required=True, help="perspective video")
    p.add_argument("--output", required=True, help="directory to write panorama.mp4 and previews to")
    p.add_argument("--fov", help="input FoV, horizontal[,vertical] degrees (needed unless the poses file gives it)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--poses", help="poses JSON (python -m model.poses --help for the format)")
    how.add_argument("--estimate-poses", action="store_true", help="estimate rotations from the video (default)")
    how.add_argument("--static", action="store_true", help="no camera motion: every frame at the canvas centre")
    p.add_argument("--frames", type=int, help="use the first N frames (after --fps sampling)")
    p.add_argument("--fps", help="sample the input at this rate, or 'native' (default: the run's, else 5)")
    p.add_argument("--steps", type=int, default=25, help="Euler steps (default 25)")
    p.add_argument("--guidance", default="3", help="classifier-free guidance: G constant over the frames "
                   "(default 3, the authors'), or FIRST,LAST ramped linearly (SVD's 1,3)")
    p.add_argument("--height", type=int, help="equirect height, width = 2×height (default: the run's, else 512)")
    p.add_argument("--window", type=int, help="frames per window T (default: the run's, else 25)")
    p.add_argument("--context", type=int, help="context frames S reused by the next window (default: run's, else 5)")
    p.add_argument("--no-blend", action="store_true", help="plain decoding instead of blended decoding")
    p.add_argument("--blend-band", type=float, default=0.5,
                   help="blend ramp width each side of the seam as a fraction of W: 0.5 = paper eq. 5 "
                        "(whole width), 0.25 / 0.0625 = the authors' W/4 / W/16 bands")
    p.add_argument("--latent-roll", action="store_true", help="roll latents by W/4 after every step")
    p.add_argument("--sigma-cond", type=float, default=0.02, help="condition noise augmentation σ_cond")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (default: cuda when available)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="network precision (auto: bfloat16 on GPU as trained, float32 on CPU; float16 keeps "
                        "the VAE in float32, diffusers' force_upcast)")
    p.add_argument("--decode-chunk", type=int, default=None,
                   help="frames per VAE decode call (default: the whole window; lower it to save memory)")
    p.add_argument("--variant", default="auto", choices=["auto", "fp16", "none"],
                   help="weight files: auto (what the directories hold), fp16 (*.fp16.*) or none")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)")
    p.add_argument("--max-frame-pixels", type=int, default=MAX_FRAME_PIXELS,
                   help=f"refuse an input whose frames are larger (default {MAX_FRAME_PIXELS})")
    p.add_argument("--max-video-pixels", type=int, default=MAX_VIDEO_PIXELS,
                   help=f"refuse to hold more decoded input pixels than this (default {MAX_VIDEO_PIXELS}); "
                        "input frames are decoded at most as wide as the panorama")
    return p.parse_args(argv)


def _parse_pair(text: str, name: str) -> tuple[float, float]:
    """"G" → (G, G); "A,B" → (A, B)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise ValueError(f"{name}: expected G or FIRST,LAST, got {text!r}")
    return values[0], values[-1]


def check_inputs(args: argparse.Namespace) -> dict:
    """Every check that needs no heavy work; returns what the run needs. Raises one clear error."""
    from model.poses import Poses, parse_fov
    from shards.video import check_frame_budget, probe, sample_indices

    info = probe(args.input)  # unreadable / missing video → ValueError / FileNotFoundError naming it
    check_frame_budget(info.width, info.height, args.max_frame_pixels, str(args.input))  # before any model
    paths = resolve_model(args.model, args.base, args.variant)
    fields = config_defaults(paths.run_config)
    if args.fps is not None:
        fields["fps"] = None if args.fps == "native" else _parse_fps(args.fps)
    for key in ("height", "window", "context"):
        if getattr(args, key) is not None:
            fields[key] = getattr(args, key)
    cfg = GenerateConfig(steps=args.steps, guidance=_parse_pair(args.guidance, "--guidance"),
                         blend=not args.no_blend, blend_band=args.blend_band, latent_roll=args.latent_roll,
                         sigma_cond=args.sigma_cond, seed=args.seed, decode_chunk=args.decode_chunk,
                         variant=args.variant, **fields)
    multiple = size_multiple(paths)
    if cfg.height % multiple:
        raise ValueError(f"--height {cfg.height}: must be a multiple of {multiple} for this model "
                         "(VAE factor × UNet downsampling)")
    indices = sample_indices(info.num_frames, info.fps, cfg.fps, args.frames, name=str(args.input))
    fov = parse_fov(args.fov) if args.fov else None
    poses = None
    if args.poses:
        poses = Poses.load(args.poses)
        poses.check_frames(len(indices), args.poses)
        if fov is not None:
            poses = replace(poses, fov_deg=fov)
    elif fov is None:
        raise ValueError("--fov: the input's field of view is needed (to estimate poses and to project "
                         "the frames); give --fov H[,V] or a --poses file that holds fov_deg")
    fps_id = cfg.fps_id if cfg.fps_id is not None else (cfg.fps or info.fps)
    return {"info": info, "paths": paths, "cfg": cfg, "indices": indices, "fov": fov, "poses": poses,
            "fps": cfg.fps or info.fps, "fps_id": fps_id}


def _parse_fps(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--fps: expected a number or 'native', got {text!r}") from None


def _device_dtype(args) -> tuple[torch.device, torch.dtype]:
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    if args.dtype == "auto":  # bf16 as trained; fp16 only on request (with the VAE upcast)
        return device, torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, getattr(torch, args.dtype)


def run(args: argparse.Namespace) -> Path:
    t0 = time.perf_counter()
    checked = check_inputs(args)  # before the heavy imports: a bad input fails fast and small
    from model.network import load_svd
    from model.poses import Poses, estimate_poses
    from shards.spherical import tag_equirect_mp4
    from shards.video import decode_frames, fit_size, write_mp4

    cfg, paths, fps = checked["cfg"], checked["paths"], checked["fps"]
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = {}

    # decoded frame by frame at most as wide as the panorama (more input detail than that is never used)
    info = checked["info"]
    pers = decode_frames(args.input, indices=checked["indices"], size=fit_size(info.width, info.height, 2 * cfg.height),
                         max_frame_pixels=args.max_frame_pixels, max_video_pixels=args.max_video_pixels)
    poses = checked["poses"]
    if poses is None and args.static:
        zeros = np.zeros(len(pers))
        poses = Poses(checked["fov"], zeros, zeros, zeros, fps=fps, source="static")
    elif poses is None:
        log.info("estimating poses of %d frames", len(pers))
        poses = estimate_poses(pers, checked["fov"], fps=fps, name=str(args.input), progress=True)
    timings["poses_s"] = time.perf_counter() - t0

    device, dtype = _device_dtype(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    t1 = time.perf_counter()
    svd = load_svd(paths.svd_dir, unet_path=paths.unet_dir, dtype=dtype, device=device, variant=cfg.variant)
    if dtype == torch.float16 and svd.vae.config.get("force_upcast", True):
        svd.vae.to(torch.float32)  # diffusers' upcast: SVD's VAE overflows in fp16
    svd.unet.eval()
    sigmas = scheduler_sigmas(paths.svd_dir, cfg.steps)
    timings["load_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    result = generate_panorama(svd, pers, poses, cfg, sigmas, checked["fps_id"], progress=True)
    timings["generate_s"] = time.perf_counter() - t2

    panorama_path = write_mp4(out_dir / "panorama.mp4", result["panorama"], fps, crf=17)
    tag_equirect_mp4(panorama_path)
    write_mp4(out_dir / "condition.mp4", outlined(result["canvas"], result["mask"]), fps, crf=17)
    write_mp4(out_dir / "mask.mp4", np.repeat(result["mask"][..., None] * np.uint8(255), 3, axis=-1), fps, crf=17)
    _write_png(out_dir / "preview.png", preview_grid(result["canvas"], result["mask"], result["panorama"]))
    poses.save(out_dir / "poses.json")
    summary = {
        "input": str(args.input), "model": {"svd": str(paths.svd_dir), "unet": str(paths.unet_dir)},
        "config": asdict(cfg), "fps": fps, "fps_id": checked["fps_id"], "frames": len(pers),
        "fov_deg": list(poses.fov_pair(pers.shape[1:3])),
        "windows": [asdict(w) for w in result["windows"]], "padded_frames": result["windows"][-1].stop - len(pers),
        "seam_discontinuity": result["seam"], "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    (out_dir / "generation.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {panorama_path} ({len(pers)} frames {2 * cfg.height}×{cfg.height}, "
          f"{len(result['windows'])} window(s)) and previews in {out_dir}")
    return panorama_path


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not be written")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run(args)
    except (ValueError, FileNotFoundError) as e:  # bad input: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
