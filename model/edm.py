"""EDM in pure functions (Karras et al. 2022, "Elucidating the Design Space…", Table 1),
with the Stable Video Diffusion parameterisation (σ_data = 1, c_out negated) and the Argus
latitude weight (paper eq. 1) and noise schedule (supplement §3.2).

Everything here is stateless: tensors in, tensors out. σ is broadcast against the latents by
`append_dims`, so a (B,) σ works with (B,T,C,H,W) latents.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

SIGMA_DATA = 1.0  # SVD trains with σ_data = 1 (latents divided by the VAE scaling factor)


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a (B,) tensor broadcasts against an ndim tensor."""
    if x.ndim > ndim:
        raise ValueError(f"append_dims: tensor has {x.ndim} dims, more than the target {ndim}")
    return x.reshape(*x.shape, *([1] * (ndim - x.ndim)))


# --- Preconditioning (Karras et al. Table 1, "Ours"; SVD negates c_out) -----------------------

def c_skip(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """c_skip(σ) = σ_data² / (σ² + σ_data²)."""
    return sigma_data**2 / (sigma**2 + sigma_data**2)


def c_out(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """c_out(σ) = −σ·σ_data / √(σ² + σ_data²) (negative sign: SVD's v-like parameterisation)."""
    return -sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()


def c_in(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """c_in(σ) = 1 / √(σ² + σ_data²)."""
    return 1.0 / (sigma**2 + sigma_data**2).sqrt()


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    """c_noise(σ) = ¼ ln σ (the timestep the UNet sees)."""
    return 0.25 * sigma.log()


def loss_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """λ(σ) = (σ² + σ_data²) / (σ·σ_data)², so the effective target of F_θ has unit variance."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def denoise(
    F: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    sigma: torch.Tensor,
    sigma_data: float = SIGMA_DATA,
) -> torch.Tensor:
    """Paper eq. 2: f_θ(y; σ) = c_skip(σ)·y + c_out(σ)·F_θ(c_in(σ)·y; c_noise(σ)).

    `F(x_in, c_noise)` is the raw network; `sigma` has shape (B,) and `y` (B, …).
    """
    s = append_dims(sigma, y.ndim)
    return c_skip(s, sigma_data) * y + c_out(s, sigma_data) * F(c_in(s, sigma_data) * y, c_noise(sigma))


# --- Training noise distribution (supplement §3.2) ---------------------------------------------

def sample_sigma(
    n: int,
    p_mean: float,
    p_std: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """ln σ ~ N(P_mean, P_std²) (Karras et al. §5 'training'); returns (n,) float32."""
    z = torch.randn(n, generator=generator, device=device)
    return (p_mean + p_std * z).exp()


def p_mean_at(step: int, total_steps: int, start: float, end: float) -> float:
    """P_mean ramped linearly from `start` at step 0 to `end` at `total_steps`.

    Supplement §3.2: stage 1 goes (P_mean, P_std) = (−1, 1) → (0, 1); stage 2 holds (1, 1)
    (start == end).
    """
    if total_steps <= 0:
        return end
    t = min(max(step / total_steps, 0.0), 1.0)
    return start + (end - start) * t


# --- Latitude weight (paper eq. 1; the authors' public code) -----------------------------------

def latitude_weight(
    height: int,
    width: int,
    kind: str = "paper",
    delta: float = 0.01,
) -> torch.Tensor:
    """Per-pixel loss weight of an equirect map, (1, height, width), normalised to mean 1.

    kind="paper":   λ(h) = (½ − |½ − h|)² + δ, h ∈ [0, 1] the row position at pixel centres
                    (paper eq. 1). δ keeps the pole rows contributing; 0.01 = 4 % of the
                    equator's 0.25 (the paper gives no value).
    kind="authors": √(1 − h²) + 0.25 with h ∈ [0, 1] the distance from the equator (|latitude|/90°),
                    as in the authors' public training code; `delta` is unused.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"latitude_weight: height and width must be positive, got {height}×{width}")
    h = (torch.arange(height, dtype=torch.float64) + 0.5) / height  # row centre ∈ (0, 1), top = 0
    if kind == "paper":
        if delta < 0:
            raise ValueError(f"latitude_weight: delta must be ≥ 0, got {delta}")
        w = (0.5 - (0.5 - h).abs()) ** 2 + delta
    elif kind == "authors":
        d = (2.0 * h - 1.0).abs()  # distance from the equator, 0 at the equator, → 1 at the poles
        w = (1.0 - d**2).sqrt() + 0.25
    else:
        raise ValueError(f"latitude_weight: kind must be 'paper' or 'authors', got {kind!r}")
    if float(w.sum()) == 0.0:
        raise ValueError("latitude_weight: all weights are zero (delta=0 with height 1?)")
    w = w / w.mean()
    return w.to(torch.float32).reshape(1, height, 1).expand(1, height, width).contiguous()


# --- Loss (paper eq. 1 with the EDM weighting) -------------------------------------------------

def edm_loss(
    denoised: torch.Tensor,
    target: torch.Tensor,
    sigma: torch.Tensor,
    lat_weight: torch.Tensor | None = None,
    sigma_data: float = SIGMA_DATA,
) -> torch.Tensor:
    """Per-sample loss (B,): mean over pixels of λ(σ)·λ(h)·‖f_θ(y; σ) − x‖².

    `denoised`, `target`: (B, …, H, W) latents; `lat_weight`: (1, H, W) from `latitude_weight`
    at latent resolution (None = uniform).
    """
    if denoised.shape != target.shape:
        raise ValueError(f"edm_loss: denoised {tuple(denoised.shape)} != target {tuple(target.shape)}")
    err = (denoised.float() - target.float()) ** 2
    if lat_weight is not None:
        err = err * lat_weight.to(err.device, err.dtype)
    per_sample = err.flatten(1).mean(1)
    return loss_weight(sigma.float(), sigma_data) * per_sample


# --- Sampling (Karras et al. eq. 5 schedule, Euler = Algorithm 2 without the 2nd-order step) ----

def karras_sigmas(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 700.0,
    rho: float = 7.0,
) -> torch.Tensor:
    """Karras et al. eq. 5: σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, then σ_n = 0.

    Returns (n + 1,) float32, decreasing, ending in 0.
    """
    if n < 1:
        raise ValueError(f"karras_sigmas: n must be ≥ 1, got {n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"karras_sigmas: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(torch.float32)


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One Euler step of the probability-flow ODE dx/dσ = (x − D(x; σ))/σ (Karras et al. eq. 3)."""
    d = (x - denoised) / sigma
    return x + d * (sigma_next - sigma)


def initial_noise_scale(sigma_max: float) -> float:
    """x_0 = ε·√(σ_max² + 1): SVD starts from noise scaled so that c_in(σ_max)·x has unit variance."""
    return math.sqrt(sigma_max**2 + 1.0)


def sample_euler(
    D: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    callback: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Deterministic Euler sampler: x ← x + (x − D(x; σ_i))/σ_i · (σ_{i+1} − σ_i).

    `D(x, sigma_batch)` is the full denoiser (eq. 2, guidance included); `noise` is unit normal,
    scaled here by `initial_noise_scale(σ_0)`.
    """
    x = noise * initial_noise_scale(float(sigmas[0]))
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        sigma_batch = torch.full((x.shape[0],), s, device=x.device, dtype=torch.float32)
        x = euler_step(x, D(x, sigma_batch), s, s_next)
        if callback is not None:
            callback(i)
    return x


def sigma_bin_edges(p_mean: float = 0.0, p_std: float = 1.0, n: int = 4) -> list[float]:
    """Edges (n−1 of them) splitting logN(P_mean, P_std) into n equally likely σ bins, for logging."""
    normal = torch.distributions.Normal(0.0, 1.0)
    qs = [normal.icdf(torch.tensor(k / n)).item() for k in range(1, n)]
    return [math.exp(p_mean + p_std * q) for q in qs]
