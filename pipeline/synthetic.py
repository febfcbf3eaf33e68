"""Synthetic 360° corpus: small mp4s with known curation verdicts, for tests and the demo.

    python -m pipeline.synthetic --out out/demo/corpus --seed 0 [--size 512x256] [--seconds 4]
                                 [--fps 12] [--count 3]

writes `--count` valid equirectangular videos (expected: accepted) and one video of every defect
the curation filters must reject, plus `labels.csv` with the columns of `LABEL_COLUMNS`.
The same seed gives the same frames and the same labels.

Valid scenes are ray-cast directly in the equirectangular image from per-pixel view directions
(`geometry.equirect_lonlat` → `geometry.lonlat_to_xyz`): a sky gradient with 3-D value-noise
clouds, a paved ground plane with fog, box buildings whose straight edges become great-circle
curves, and striped spheres that orbit the camera and cross the ±180° seam. The camera yaws
(with a small pitch/roll wobble) through `geometry.rotate_equirect`. Because every colour is a
function of a 3-D direction, the panoramas are continuous across the seam by construction.

Expected stages name the filter *designed* for each defect (paper supp. §2.1). A strictly ordered
pipeline may reject some of them earlier: a black or flat frame also has identical left/right
halves (intra_frame) and a tiny grey-level variance (inter_frame); the verdict is the same.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

import geometry
from shards.video import write_mp4

# Rendering precision. float64, not float32: the same seed must give byte-identical files on any
# machine. numpy's float64 transcendentals (exp, arctan2, …) and BLAS products take different SIMD
# paths on different CPUs (and for differently aligned arrays), differing in the last bits; in
# float64 such a difference flips a uint8 rounding or a ray hit test every few thousand pixels, and
# one flipped pixel changes every x264 decision after it. In float64 the same ulp differences are
# ~1e-13 of a grey level: they never reach a rounding or a hit test. Dot products are written out
# (`_dot`) rather than left to BLAS, whose kernel (and FMA use) depends on the CPU.
F = np.float64

LABEL_COLUMNS = ["file", "expected_verdict", "expected_stage", "expected_reason", "kind", "description"]


@dataclass
class SyntheticConfig:
    """How big and how many. `count` is the number of valid (accepted) videos; every reject kind
    is written once on top of them."""

    width: int = 512
    height: int = 256
    seconds: float = 4.0
    fps: float = 12.0
    count: int = 3
    crf: int = 20
    truncate_fraction: float = 0.4  # the corrupt file keeps this share of its bytes

    @classmethod
    def from_dict(cls, d: dict) -> "SyntheticConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"SyntheticConfig: unknown keys {sorted(unknown)}")
        return cls(**d)

    @property
    def num_frames(self) -> int:
        return max(1, int(round(self.seconds * self.fps)))

    def validate(self) -> "SyntheticConfig":
        if self.width != 2 * self.height or self.height % 2:
            raise ValueError(f"size: an equirect needs width = 2 * height with an even height "
                             f"(yuv420p), got {self.width}x{self.height}")
        if self.height < 32:
            raise ValueError(f"size: height must be >= 32, got {self.height}")
        if self.seconds <= 0 or self.fps <= 0:
            raise ValueError(f"seconds and fps must be > 0, got seconds={self.seconds} fps={self.fps}")
        if self.num_frames < 4:
            raise ValueError(f"seconds * fps must give >= 4 frames, got {self.num_frames}")
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        if not 0.0 < self.truncate_fraction < 1.0:
            raise ValueError(f"truncate_fraction must be in (0, 1), got {self.truncate_fraction}")
        return self


# ----------------------------------------------------------------------------------------------
# Scene description (data only) and its random sampling


@dataclass
class Building:
    center: np.ndarray  # (x, z) on the ground, metres, camera-local axes (x right, z forward)
    half: np.ndarray  # (half width x, half depth z)
    height: float
    color: np.ndarray  # (3,) rgb in [0, 1]


@dataclass
class Ball:
    lon0: float  # degrees, world longitude at t = 0
    lon_rate: float  # degrees per second
    lat0: float
    lat_amp: float
    lat_freq: float  # Hz
    dist: float  # metres from the camera
    radius: float
    color_a: np.ndarray
    color_b: np.ndarray
    spin: float  # stripe rotation, radians per second


@dataclass
class Scene:
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    ground_a: np.ndarray
    ground_b: np.ndarray
    tile: float  # paving tile size, metres
    cam_height: float
    fog_dist: float
    sun: np.ndarray  # unit vector, camera-local axes
    buildings: list[Building]
    balls: list[Ball]
    yaw0: float
    yaw_rate: float  # degrees per second
    pitch0: float
    roll0: float
    wobble_amp: float  # degrees
    wobble_freq: float  # Hz
    perm: np.ndarray = field(repr=False)  # value-noise lattice hash (256,)
    lattice: np.ndarray = field(repr=False)  # value-noise lattice values (256,)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One colour from hue in [0, 1), saturation and value, as float rgb in [0, 1]."""
    hsv = np.array([[[h * 180.0, s * 255.0, v * 255.0]]], dtype=F)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(F) / 255.0


def _dot(a: np.ndarray, b) -> np.ndarray:
    """a · b over the last axis (length 3), elementwise: the same bits on every CPU (see F)."""
    b = np.asarray(b, F)
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _local(lon_deg, lat_deg) -> np.ndarray:
    """Camera-local unit vectors (x right, y up, z forward) for longitude / latitude in degrees."""
    lon, lat = np.radians(lon_deg), np.radians(lat_deg)
    return np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)], -1)


def sample_scene(rng: np.random.Generator, seconds: float) -> Scene:
    """A random outdoor scene. Palettes, layout, object paths and camera motion all vary with rng."""
    hue = rng.uniform(0.0, 1.0)
    sky_hue = rng.uniform(0.52, 0.66)  # blue-ish skies, sunset tint on the horizon sometimes
    sky_zenith = _hsv(sky_hue, rng.uniform(0.55, 0.9), rng.uniform(0.55, 0.85))
    sky_horizon = _hsv(rng.choice([sky_hue, rng.uniform(0.02, 0.12)]), rng.uniform(0.1, 0.35),
                       rng.uniform(0.85, 1.0))
    ground_a = _hsv(hue, rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.55))
    ground_b = _hsv((hue + rng.uniform(0.05, 0.15)) % 1.0, rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.4))

    buildings = []
    n_buildings = int(rng.integers(4, 8))
    azimuths = np.sort(rng.uniform(0, 360, n_buildings))
    for az in azimuths:
        half = rng.uniform(1.5, 5.0, size=2)
        dist = rng.uniform(7.0, 25.0) + float(np.hypot(*half))  # the camera stays outside
        center = dist * np.array([np.sin(np.radians(az)), np.cos(np.radians(az))])
        color = _hsv(rng.uniform(0, 1), rng.uniform(0.15, 0.7), rng.uniform(0.45, 0.95))
        buildings.append(Building(center, half, float(rng.uniform(4.0, 22.0)), color))

    yaw_rate = float(rng.choice([-1, 1]) * rng.uniform(12.0, 30.0))
    yaw0 = float(rng.uniform(-180, 180))
    balls = []
    for i in range(int(rng.integers(2, 5))):
        rel_rate = float(rng.choice([-1, 1]) * rng.uniform(25.0, 60.0))  # relative to the camera
        rate = yaw_rate + rel_rate
        if i == 0:  # the first ball crosses the image seam (camera-relative lon 180°) mid-clip
            lon0 = 180.0 + yaw0 + yaw_rate * seconds / 2 - rate * seconds / 2
        else:
            lon0 = float(rng.uniform(-180, 180))
        balls.append(Ball(
            lon0=float(lon0), lon_rate=rate, lat0=float(rng.uniform(-8, 25)),
            lat_amp=float(rng.uniform(0, 10)), lat_freq=float(rng.uniform(0.1, 0.4)),
            dist=float(rng.uniform(3.0, 6.0)), radius=float(rng.uniform(0.4, 0.9)),
            color_a=_hsv(rng.uniform(0, 1), rng.uniform(0.7, 1.0), rng.uniform(0.8, 1.0)),
            color_b=_hsv(rng.uniform(0, 1), rng.uniform(0.6, 1.0), rng.uniform(0.5, 0.9)),
            spin=float(rng.uniform(-4, 4))))

    sun = _local(rng.uniform(-180, 180), rng.uniform(25, 60))
    return Scene(
        sky_zenith=sky_zenith, sky_horizon=sky_horizon, ground_a=ground_a, ground_b=ground_b,
        tile=float(rng.uniform(1.0, 2.5)), cam_height=float(rng.uniform(1.4, 2.0)),
        fog_dist=float(rng.uniform(25.0, 60.0)), sun=sun, buildings=buildings, balls=balls,
        yaw0=yaw0, yaw_rate=yaw_rate, pitch0=float(rng.uniform(-6, 6)),
        roll0=float(rng.uniform(-5, 5)), wobble_amp=float(rng.uniform(1.0, 4.0)),
        wobble_freq=float(rng.uniform(0.15, 0.5)),
        perm=rng.permutation(256).astype(np.int64), lattice=rng.uniform(0, 1, 256).astype(F))


# ----------------------------------------------------------------------------------------------
# Rendering: pure functions of view directions


def view_directions(height: int, width: int) -> np.ndarray:
    """Camera-local unit view direction (x right, y up, z forward) of every equirect pixel centre.

    Goes through the geometry package so pixel centres and the lon/lat convention are the shared
    ones; projecting onto the geometry frame's right/up/forward vectors makes the result
    independent of which world axis geometry calls x, y or z.
    """
    lon, lat = geometry.equirect_lonlat(height, width)
    xyz = np.asarray(geometry.lonlat_to_xyz(lon, lat), dtype=np.float64)
    basis = np.stack([np.asarray(geometry.lonlat_to_xyz(np.float64(a), np.float64(b)), np.float64)
                      for a, b in ((90.0, 0.0), (0.0, 90.0), (0.0, 0.0))])  # right, up, forward
    return np.stack([_dot(xyz, axis) for axis in basis], -1).astype(F)


def value_noise(p: np.ndarray, perm: np.ndarray, lattice: np.ndarray, octaves: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1] at points p (..., D), smooth in p (so seamless on the sphere)."""
    total = np.zeros(p.shape[:-1], F)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        q = p * (2.0 ** o)
        i0 = np.floor(q).astype(np.int64)
        f = (q - i0).astype(F)
        f = f * f * (3.0 - 2.0 * f)  # smoothstep: C1 across lattice cells
        acc = np.zeros(p.shape[:-1], F)
        for corner in range(2 ** p.shape[-1]):
            h = np.zeros(p.shape[:-1], np.int64) + o * 31
            w = np.ones(p.shape[:-1], F)
            for d in range(p.shape[-1]):
                bit = (corner >> d) & 1
                h = perm[(h + i0[..., d] + bit) & 255]
                w = w * (f[..., d] if bit else 1.0 - f[..., d])
            acc += w * lattice[h]
        total += amp * acc
        norm += amp
        amp *= 0.5
    return total / norm


def render_background(dirs: np.ndarray, scene: Scene, origin=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Static world (sky, ground, buildings) seen along dirs (..., 3) from origin (metres).

    Returns rgb (..., 3) float64 in [0, 1] and the hit distance (..., ) (inf for the sky).
    """
    o = np.asarray(origin, F)
    dx, dy, dz = dirs[..., 0], dirs[..., 1], dirs[..., 2]

    # sky: horizon → zenith gradient, clouds from 3-D noise on the direction itself, a sun disc
    elev = np.clip(dy, 0.0, 1.0)[..., None]
    rgb = scene.sky_horizon + (scene.sky_zenith - scene.sky_horizon) * np.sqrt(elev)
    sky = dy > 0
    clouds = value_noise(dirs[sky] * 3.0, scene.perm, scene.lattice, octaves=4)
    cover = (np.clip((clouds - 0.5) * 3.0, 0.0, 1.0) * np.clip(dy[sky] * 4.0, 0.0, 1.0))[:, None]
    rgb[sky] = rgb[sky] * (1 - 0.8 * cover) + 0.8 * cover * F(0.97)
    sun_glow = np.clip((_dot(dirs, scene.sun) - 0.995) / 0.005, 0.0, 1.0)[..., None]
    rgb = rgb * (1 - sun_glow) + sun_glow
    depth = np.full(dirs.shape[:-1], np.inf, F)

    # ground plane y = -cam_height: paving tiles, per-tile tint, fine noise, then fog
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(dy < -1e-4, (-scene.cam_height - o[1]) / dy, np.inf).astype(F)
    ground = np.isfinite(t_ground)
    tg = t_ground[ground]
    gx = o[0] + tg * dx[ground]
    gz = o[2] + tg * dz[ground]
    u, v = gx / scene.tile, gz / scene.tile
    iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    tint = scene.lattice[scene.perm[(scene.perm[iu & 255] + iv) & 255]][:, None]
    base = scene.ground_a * (1 - tint) + scene.ground_b * tint
    edge = np.minimum(np.minimum(u - iu, 1 - (u - iu)), np.minimum(v - iv, 1 - (v - iv)))
    line = np.clip(1.0 - edge / 0.04, 0.0, 1.0) * np.clip(6.0 / tg, 0.0, 1.0)  # fades with distance
    grain = value_noise(np.stack([gx, gz], -1) * 2.0, scene.perm, scene.lattice, octaves=3)[:, None]
    col = base * (0.75 + 0.5 * grain) * (1 - 0.45 * line[:, None])
    fog = np.exp(-tg / scene.fog_dist)[:, None]
    rgb[ground] = col * fog + scene.sky_horizon * (1 - fog)
    depth[ground] = tg

    # buildings: ray / axis-aligned box slabs; the nearest hit in front of what is there wins
    inv = 1.0 / np.where(np.abs(dirs) < 1e-6, 1e-6, dirs)
    for b in scene.buildings:
        lo = np.array([b.center[0] - b.half[0], -scene.cam_height, b.center[1] - b.half[1]], F)
        hi = np.array([b.center[0] + b.half[0], b.height - scene.cam_height, b.center[1] + b.half[1]],
                      F)
        t1, t2 = (lo - o) * inv, (hi - o) * inv
        tnear, tfar = np.minimum(t1, t2), np.maximum(t1, t2)
        t_in = tnear.max(-1)
        hit = (tfar.min(-1) >= t_in) & (t_in > 0) & (t_in < depth)
        if not hit.any():
            continue
        axis = tnear[hit].argmax(-1)  # which slab was entered last: the face that was hit
        normal = np.zeros((axis.size, 3), F)
        normal[np.arange(axis.size), axis] = -np.sign(dirs[hit][np.arange(axis.size), axis])
        th = t_in[hit]
        p = o + th[:, None] * dirs[hit]
        light = 0.45 + 0.55 * np.clip(_dot(normal, scene.sun), 0.0, 1.0)
        floors = 0.9 + 0.1 * (np.mod(p[:, 1] + scene.cam_height, 3.0) > 0.4)  # storey bands
        grain = value_noise(p * 1.5, scene.perm, scene.lattice, octaves=2)
        col = b.color * (light * floors * (0.85 + 0.3 * grain))[:, None]
        fog = np.exp(-th / scene.fog_dist)[:, None]
        rgb[hit] = col * fog + scene.sky_horizon * (1 - fog)
        depth[hit] = th
    return rgb.astype(F), depth


def ball_center(ball: Ball, t: float) -> np.ndarray:
    """Camera-local centre (metres) of a ball at time t (s): it orbits the camera in longitude."""
    lat = ball.lat0 + ball.lat_amp * np.sin(2 * np.pi * ball.lat_freq * t)
    return ball.dist * _local(ball.lon0 + ball.lon_rate * t, lat)


def draw_balls(rgb: np.ndarray, depth: np.ndarray, dirs: np.ndarray, scene: Scene, t: float,
               origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Striped, Lambert-lit spheres at time t composited over rgb with a depth test (new array)."""
    out = rgb.copy()
    depth = depth.copy()
    o = np.asarray(origin, F)
    for ball in scene.balls:
        c = (ball_center(ball, t) - o).astype(F)
        cdist = float(np.sqrt(_dot(c, c)))
        cos_r = np.sqrt(max(0.0, 1.0 - (ball.radius / cdist) ** 2))
        near = _dot(dirs, c / cdist) > cos_r - 1e-3  # cheap cone test before the quadratic
        if not near.any():
            continue
        d = dirs[near]
        b = _dot(d, c)
        disc = b * b - cdist * cdist + ball.radius ** 2
        hit = disc > 0
        th = b - np.sqrt(np.maximum(disc, 0.0))
        hit &= th < depth[near]
        if not hit.any():
            continue
        n = (th[hit, None] * d[hit] - c) / ball.radius
        stripes = np.sin(5.0 * np.arctan2(n[:, 0], n[:, 2]) + ball.spin * t) > 0
        col = np.where(stripes[:, None], ball.color_a, ball.color_b)
        light = 0.35 + 0.65 * np.clip(_dot(n, scene.sun), 0.0, 1.0)
        idx = np.flatnonzero(near)[hit]
        flat = out.reshape(-1, 3)
        flat[idx] = col * light[:, None]
        depth.reshape(-1)[idx] = th[hit]
    return out


def camera_angles(scene: Scene, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame camera (yaw, pitch, roll) in degrees: a steady pan with a small wobble."""
    w = 2 * np.pi * scene.wobble_freq * times
    yaw = scene.yaw0 + scene.yaw_rate * times
    pitch = scene.pitch0 + scene.wobble_amp * np.sin(w)
    roll = scene.roll0 + 0.7 * scene.wobble_amp * np.sin(1.3 * w + 1.0)
    return yaw, pitch, roll


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """float rgb in [0, 1] → uint8, rounded to nearest."""
    return np.clip(rgb * F(255.0) + F(0.5), 0, 255).astype(np.uint8)


def render_world_frames(scene: Scene, height: int, width: int, times: np.ndarray, move: bool = True,
                        origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(T, H, W, 3) float64 equirect frames in the world frame (no camera rotation yet)."""
    dirs = view_directions(height, width)
    bg, depth = render_background(dirs, scene, origin)
    frames = np.empty((len(times), height, width, 3), F)
    for k, t in enumerate(times):
        frames[k] = draw_balls(bg, depth, dirs, scene, float(t) if move else 0.0, origin)
    return frames


def rotate_frames(world: np.ndarray, yaw, pitch, roll) -> np.ndarray:
    """The camera's view of each world frame: geometry.rotate_equirect with one rotation per frame."""
    return np.asarray(geometry.rotate_equirect(world, np.asarray(yaw), np.asarray(pitch),
                                               np.asarray(roll)), F)


def render_valid(scene: Scene, height: int, width: int, times: np.ndarray,
                 origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A valid 360° video: moving balls under a panning, wobbling camera. (T, H, W, 3) uint8."""
    world = render_world_frames(scene, height, width, times, True, origin)
    return to_uint8(rotate_frames(world, *camera_angles(scene, times)))


# ----------------------------------------------------------------------------------------------
# Defects the curation filters must reject. Each is a pure function of frames (+ rng).


def squash_pair(first: np.ndarray, second: np.ndarray, axis: int) -> np.ndarray:
    """Two equirect videos resized to half along `axis` (1 = rows: top-bottom, 2 = columns: side by
    side) and stacked there, as stereo 360° videos are stored."""
    t, h, w, _ = first.shape
    size = (w, h // 2) if axis == 1 else (w // 2, h)
    halves = [np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in v])
              for v in (first, second)]
    return np.concatenate(halves, axis=axis)


def fisheye_directions(size: int, fov_deg: float = 180.0) -> tuple[np.ndarray, np.ndarray]:
    """Camera-local directions of an equidistant fisheye image (size × size) looking forward, and
    the mask of pixels inside its image circle."""
    c = (np.arange(size, dtype=F) + 0.5) / size * 2.0 - 1.0
    x, y = np.meshgrid(c, -c)
    r = np.hypot(x, y)
    theta = r * np.radians(fov_deg) / 2.0  # equidistant: angle from the axis ∝ image radius
    phi = np.arctan2(y, x)
    dirs = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    return dirs.astype(F), r <= 1.0


def sample_equirect(equi: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Bilinear look-up of an equirect (H, W, C) along camera-local directions (..., 3), wrapping at
    the seam. Pixel centres follow the shared convention (lon −180° at the left edge)."""
    h, w = equi.shape[:2]
    lon = np.degrees(np.arctan2(dirs[..., 0], dirs[..., 2]))
    lat = np.degrees(np.arcsin(np.clip(dirs[..., 1], -1.0, 1.0)))
    map_x = ((lon + 180.0) / 360.0 * w - 0.5).astype(np.float32)  # cv2.remap takes float32 maps
    map_y = np.clip((90.0 - lat) / 180.0 * h - 0.5, 0, h - 1).astype(np.float32)
    return cv2.remap(equi, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def dual_fisheye_180(frames: np.ndarray) -> np.ndarray:
    """A VR180 video: two 180° equidistant fisheye circles side by side (both eyes from the same
    frames), black outside the circles. (T, H, W, 3) uint8 from equirect frames."""
    t, h, w, _ = frames.shape
    dirs, inside = fisheye_directions(h)
    eye = np.stack([sample_equirect(f, dirs) * inside[..., None] for f in frames]).astype(np.uint8)
    return np.concatenate([eye, eye], axis=2)


def burn_in_text(frames: np.ndarray, text: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Large static white-on-black-outline text near the image centre, as a title card or logo is
    burned in. Returns the new frames and the (x0, y0, x1, y1) box that can differ."""
    t, h, w, _ = frames.shape
    font, thick = cv2.FONT_HERSHEY_DUPLEX, max(2, int(round(h / 64)))
    # sized to span ~40% of the width (~145° of longitude), like a title card seen in a headset
    scale = 0.4 * w / cv2.getTextSize(text, font, 1.0, thick)[0][0]
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    x, y = (w - tw) // 2, h // 2 + th // 2
    out = frames.copy()
    for f in out:
        cv2.putText(f, text, (x, y), font, scale, (0, 0, 0), thick + 4, cv2.LINE_AA)
        cv2.putText(f, text, (x, y), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    pad = thick + 4
    box = (max(0, x - pad), max(0, y - th - pad), min(w, x + tw + pad), min(h, y + base + pad))
    return out, box


def with_sensor_noise(frame: np.ndarray, num_frames: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """One still frame repeated with fresh Gaussian noise per frame: pixels change, nothing moves."""
    # float32 is exact here: the draws are integer-derived and the rest is + and × (no SIMD-dependent maths)
    noise = rng.standard_normal(size=(num_frames,) + frame.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(frame.astype(np.float32)[None] + noise + np.float32(0.5), 0, 255).astype(np.uint8)


def remux_moov_at_end(mp4: bytes) -> bytes:
    """The same packets in an mp4 whose index (moov) follows the data, as a non-faststart writer
    leaves it: cutting such a file loses the index, like an interrupted download. No re-encoding."""
    src_buf, dst_buf = io.BytesIO(mp4), io.BytesIO()
    with av.open(src_buf, "r") as src, av.open(dst_buf, "w", format="mp4") as dst:
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        for packet in src.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            dst.mux(packet)
    return dst_buf.getvalue()


# ----------------------------------------------------------------------------------------------
# The corpus


TEXTS = ["SUBSCRIBE NOW", "LIVE 360 VR", "BREAKING NEWS", "HAPPY NEW YEAR", "SALE 50% OFF", "WELCOME HOME"]


@dataclass
class Item:
    """One corpus entry: how to make its frames (or bytes) and what curation should say."""

    kind: str
    verdict: str
    stage: str
    reason: str
    description: str
    make: Callable[[], np.ndarray]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *key]))


def corpus_items(seed: int, config: SyntheticConfig) -> list[Item]:
    """Every video of the corpus, in order, with lazily rendered frames (shared renders cached)."""
    h, w, n = config.height, config.width, config.num_frames
    times = np.arange(n, dtype=np.float64) / config.fps
    n_scenes = max(config.count, 2)  # the cut needs two different scenes
    scenes = [sample_scene(_rng(seed, 0, i), config.seconds) for i in range(n_scenes)]
    cache: dict = {}

    def world(i: int, eye: float = 0.0) -> np.ndarray:
        key = ("world", i, eye)
        if key not in cache:
            cache[key] = render_world_frames(scenes[i], h, w, times, True, origin=(eye, 0.0, 0.0))
        return cache[key]

    def valid(i: int, eye: float = 0.0) -> np.ndarray:
        key = ("valid", i, eye)
        if key not in cache:
            cache[key] = to_uint8(rotate_frames(world(i, eye), *camera_angles(scenes[i], times)))
        return cache[key]

    def pick(j: int) -> int:
        return j % n_scenes

    baseline = 0.065  # metres between stereo eyes

    def perspective() -> np.ndarray:
        s = scenes[pick(1)]
        pers = geometry.equirect_to_perspective(world(pick(1)), 100.0, yaw=s.yaw0 + s.yaw_rate * times,
                                                pitch=np.zeros_like(times), roll=np.zeros_like(times),
                                                out_hw=(h, w))
        return to_uint8(np.asarray(pers, F))

    def pillarbox() -> np.ndarray:
        s = scenes[pick(2)]
        pw = int(round(h * 16 / 9)) // 2 * 2
        pers = geometry.equirect_to_perspective(world(pick(2)), 90.0, yaw=s.yaw0 + s.yaw_rate * times,
                                                pitch=np.zeros_like(times), roll=np.zeros_like(times),
                                                out_hw=(h, pw))
        out = np.zeros((n, h, w, 3), np.uint8)
        x0 = (w - pw) // 2
        out[:, :, x0:x0 + pw] = to_uint8(np.asarray(pers, F))
        return out

    def poster() -> np.ndarray:
        return np.repeat(valid(pick(1))[:1], n, axis=0)

    def static_noisy() -> np.ndarray:
        return with_sensor_noise(valid(pick(2))[0], n, 6.0, _rng(seed, 2, 1))

    def hard_cut() -> np.ndarray:
        a, b = valid(pick(0)), valid(pick(1))
        return np.concatenate([a[: n // 2], b[n // 2:]])

    def text() -> np.ndarray:
        phrase = TEXTS[int(_rng(seed, 2, 2).integers(len(TEXTS)))]
        return burn_in_text(valid(pick(0)), phrase)[0]

    def flat() -> np.ndarray:
        grey = float(_rng(seed, 2, 3).uniform(100, 160))
        return with_sensor_noise(np.full((h, w, 3), grey, np.uint8), n, 1.5, _rng(seed, 2, 4))

    items = [Item("equirect", "accepted", "", "", "valid equirect scene: pan + wobble, balls crossing the seam",
                  (lambda i=i: valid(i))) for i in range(config.count)]
    items += [
        Item("perspective", "rejected", "format", "seam_discontinuity",
             "ordinary perspective video (100° hFoV pan) stored at 2:1: left/right edges do not meet",
             perspective),
        Item("perspective_pillarbox", "rejected", "format", "vertical_border_lines",
             "16:9 perspective video pillarboxed into 2:1: vertical lines at the bar edges", pillarbox),
        Item("stereo_top_bottom", "rejected", "format", "horizontal_line_mid_height",
             "top-bottom stereo (two equirects squashed to H/2): sky meets ground along the middle row; "
             "the top-vs-bottom LPIPS (intra_frame) would catch it next",
             lambda: squash_pair(valid(pick(2)), valid(pick(2), baseline), axis=1)),
        Item("stereo_side_by_side", "rejected", "intra_frame", "left_right_duplicate",
             "side-by-side stereo (two equirects squashed to W/2): seam continuous, halves near-identical",
             lambda: squash_pair(valid(pick(1)), valid(pick(1), baseline), axis=2)),
        Item("vr180_fisheye", "rejected", "intra_frame", "left_right_duplicate",
             "180° video: two equidistant fisheye circles side by side; black corners keep the seam "
             "continuous, left and right halves are duplicates", lambda: dual_fisheye_180(valid(pick(0)))),
        Item("poster", "rejected", "inter_frame", "static_frames",
             "static poster: one valid frame repeated, frames identical", poster),
        Item("static_scene", "rejected", "motion", "low_flow",
             "valid scene with no motion at all but fresh sensor noise (sigma 6) each frame: frames "
             "differ (unlike the poster) yet optical flow is ~0", static_noisy),
        Item("hard_cut", "rejected", "cuts", "hard_cut",
             f"two different valid scenes concatenated: hard cut at frame {n // 2}", hard_cut),
        Item("text", "rejected", "text", "burned_in_text",
             "valid scene (twin of the first equirect video) with large static burned-in text", text),
        Item("black", "rejected", "black", "black_pixels", "all-black frames",
             lambda: np.zeros((n, h, w, 3), np.uint8)),
        Item("flat", "rejected", "flat", "low_variance", "uniform grey with faint noise (sigma 1.5)", flat),
        Item("truncated", "error", "decode", "truncated_file",
             f"valid mp4 (index after the data) cut to {config.truncate_fraction:.0%} of its bytes: the "
             "index is lost, the file cannot be opened", lambda: valid(pick(1))),
    ]
    return items


def generate_corpus(out_dir, seed: int = 0, config: SyntheticConfig | dict | None = None,
                    progress: bool = True) -> pd.DataFrame:
    """Write the corpus videos and labels.csv under out_dir; return the labels as a DataFrame."""
    if config is None:
        config = SyntheticConfig()
    elif isinstance(config, dict):
        config = SyntheticConfig.from_dict(config)
    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, counts = [], {}
    items = corpus_items(seed, config)
    for item in tqdm(items, desc="synthetic videos", unit="video", disable=not progress):
        index = counts.get(item.kind, 0)
        counts[item.kind] = index + 1
        name = f"{item.kind}_{index:03d}.mp4"
        frames = item.make()
        if item.kind == "truncated":
            tmp = out / (name + ".full.mp4")
            write_mp4(tmp, frames, config.fps, crf=config.crf, bit_exact=True)
            data = remux_moov_at_end(tmp.read_bytes())
            tmp.unlink()
            (out / name).write_bytes(data[: int(len(data) * config.truncate_fraction)])
        else:
            write_mp4(out / name, frames, config.fps, crf=config.crf, bit_exact=True)
        rows.append(dict(file=name, expected_verdict=item.verdict, expected_stage=item.stage,
                         expected_reason=item.reason, kind=item.kind, description=item.description))
    labels = pd.DataFrame(rows, columns=LABEL_COLUMNS)
    labels.to_csv(out / "labels.csv", index=False)
    return labels


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 512x256 (WIDTHxHEIGHT), got {text!r}")
    return w, h


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.synthetic", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--seed", type=int, default=0, help="same seed → same videos and labels")
    ap.add_argument("--size", type=parse_size, default=(512, 256), help="WIDTHxHEIGHT, 2:1 (default 512x256)")
    ap.add_argument("--seconds", type=float, default=4.0, help="duration of every video (default 4)")
    ap.add_argument("--fps", type=float, default=12.0, help="frame rate (default 12)")
    ap.add_argument("--count", type=int, default=3, help="number of valid videos (default 3)")
    ap.add_argument("--crf", type=int, default=20, help="x264 quality (default 20)")
    args = ap.parse_args(argv)
    config = SyntheticConfig(width=args.size[0], height=args.size[1], seconds=args.seconds, fps=args.fps,
                             count=args.count, crf=args.crf)
    try:
        config.validate()
    except ValueError as e:
        ap.error(str(e))
    labels = generate_corpus(args.out, args.seed, config)
    summary = labels.groupby("expected_verdict").size().to_dict()
    print(f"wrote {len(labels)} videos ({summary}) and labels.csv to {Path(args.out).resolve()}")


if __name__ == "__main__":
    main()
