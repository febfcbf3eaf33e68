"""Simulated handheld camera trajectories (paper eq. 3).

For frame k = 0 … T−1 (angles in degrees):

    roll(k)  = N(0, η_r) + a_r·sin(ω·k + τ_r)
    pitch(k) = N(0, η_p) + a_p·sin(ω·k + τ_p) + d_p·k (+ pitch offset, 0 by default)
    yaw(k)   = N(0, η_y) + a_y·sin(ω·k + τ_y) + d_y·k + φ0

Every scalar on the right is drawn once per trajectory, uniformly from a [low, high] range of
`TrajectoryConfig`; η are standard deviations; one ω is shared by the three axes (as in the
paper); the phases τ are drawn independently per axis. The horizontal and vertical FoV are drawn
independently from their ranges ([30°, 120°] in the paper). Yaw is not wrapped to ±180° (the
projections accept any angle), so drift stays a straight line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TrajectoryConfig", "Trajectory", "simulate_trajectory"]

Range = tuple[float, float]


@dataclass(frozen=True)
class TrajectoryConfig:
    """Ranges [low, high] that the eq. 3 parameters are drawn from (degrees, frames).

    Defaults mirror configs/geometry/trajectory.yaml (the paper gives only the FoV range; the
    others are our choices for 25 frames at ~5 fps, see the YAML comments).
    """

    hfov_deg: Range = (30.0, 120.0)
    vfov_deg: Range = (30.0, 120.0)
    yaw_offset_deg: Range = (-180.0, 180.0)  # φ0
    pitch_offset_deg: Range = (0.0, 0.0)  # not in eq. 3: the paper starts level
    omega_deg_per_frame: Range = (5.0, 45.0)  # ω
    phase_deg: Range = (0.0, 360.0)  # τ_r, τ_p, τ_y
    roll_amplitude_deg: Range = (0.0, 3.0)  # a_r
    pitch_amplitude_deg: Range = (0.0, 5.0)  # a_p
    yaw_amplitude_deg: Range = (0.0, 10.0)  # a_y
    roll_noise_deg: Range = (0.0, 0.5)  # η_r
    pitch_noise_deg: Range = (0.0, 1.0)  # η_p
    yaw_noise_deg: Range = (0.0, 1.0)  # η_y
    pitch_drift_deg_per_frame: Range = (-0.5, 0.5)  # d_p
    yaw_drift_deg_per_frame: Range = (-3.0, 3.0)  # d_y

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            rng = _as_range(value, f.name)
            if f.name.endswith("noise_deg") and rng[0] < 0:
                raise ValueError(f"{f.name}: noise standard deviations must be >= 0, got {value!r}")
            if f.name.endswith("fov_deg") and not (0 < rng[0] and rng[1] < 180):
                raise ValueError(f"{f.name}: field of view must lie in (0°, 180°), got {value!r}")
            object.__setattr__(self, f.name, rng)

    @classmethod
    def from_dict(cls, d: dict | None) -> "TrajectoryConfig":
        """From a mapping (e.g. parsed YAML); a scalar fixes a parameter (low = high)."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TrajectoryConfig: unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _as_range(value, name: str) -> Range:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number or a [low, high] pair, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"{name}: expected finite low <= high, got {value!r}")
    return (low, high)


@dataclass
class Trajectory:
    """Per-frame camera angles (degrees, (T,) float64) and the trajectory's FoV (h, v)."""

    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    fov_deg: tuple[float, float]
    params: dict = field(default_factory=dict)  # the drawn eq. 3 parameters, for logs and tests


def simulate_trajectory(num_frames: int, rng, config: TrajectoryConfig | None = None) -> Trajectory:
    """Draw one camera trajectory of `num_frames` frames (paper eq. 3).

    rng: a numpy Generator (or an int seed); config: ranges to draw from (defaults if None).
    """
    if not isinstance(num_frames, (int, np.integer)) or isinstance(num_frames, bool) or num_frames <= 0:
        raise ValueError(f"num_frames: expected a positive int, got {num_frames!r}")
    if not isinstance(rng, np.random.Generator):
        if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
            rng = np.random.default_rng(int(rng))
        else:
            raise ValueError(f"rng: expected a numpy.random.Generator or an int seed, got {type(rng).__name__}")
    c = config or TrajectoryConfig()
    if not isinstance(c, TrajectoryConfig):
        raise ValueError(f"config: expected a TrajectoryConfig, got {type(c).__name__}")

    def draw(r: Range) -> float:
        return float(rng.uniform(r[0], r[1]))

    p = {
        "hfov_deg": draw(c.hfov_deg),
        "vfov_deg": draw(c.vfov_deg),
        "yaw_offset_deg": draw(c.yaw_offset_deg),
        "pitch_offset_deg": draw(c.pitch_offset_deg),
        "omega_deg_per_frame": draw(c.omega_deg_per_frame),
    }
    for axis in ("roll", "pitch", "yaw"):
        p[f"{axis}_phase_deg"] = draw(c.phase_deg)
        p[f"{axis}_amplitude_deg"] = draw(getattr(c, f"{axis}_amplitude_deg"))
        p[f"{axis}_noise_deg"] = draw(getattr(c, f"{axis}_noise_deg"))
    p["pitch_drift_deg_per_frame"] = draw(c.pitch_drift_deg_per_frame)
    p["yaw_drift_deg_per_frame"] = draw(c.yaw_drift_deg_per_frame)

    k = np.arange(num_frames, dtype=np.float64)

    def oscillation(axis: str) -> np.ndarray:  # a·sin(ω·k + τ)
        return p[f"{axis}_amplitude_deg"] * np.sin(np.deg2rad(p["omega_deg_per_frame"] * k + p[f"{axis}_phase_deg"]))

    def noise(axis: str) -> np.ndarray:  # N(0, η)
        return rng.normal(0.0, p[f"{axis}_noise_deg"], num_frames)

    roll = noise("roll") + oscillation("roll")
    pitch = noise("pitch") + oscillation("pitch") + p["pitch_drift_deg_per_frame"] * k + p["pitch_offset_deg"]
    yaw = noise("yaw") + oscillation("yaw") + p["yaw_drift_deg_per_frame"] * k + p["yaw_offset_deg"]
    return Trajectory(yaw=yaw, pitch=pitch, roll=roll, fov_deg=(p["hfov_deg"], p["vfov_deg"]), params=p)
