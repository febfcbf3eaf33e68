"""Perspective ↔ equirectangular projection, equirect rotation and circular shift.

Axes, angles and pixel conventions are those of `geometry.rotations` (read its docstring):
x right, y down, z forward; R = R_yaw · R_pitch · R_roll maps camera rays to world directions.

Perspective cameras are pinhole cameras whose field of view spans the image *edges*: with pixel
centres at +0.5, the ray through column j of a w-wide view is x = ((j + 0.5)/w · 2 − 1) ·
tan(fov_h / 2) (rows alike with fov_v, y down). py360convert instead puts its outermost pixel
*centres* on the FoV, so at equal fov our view is wider by half a pixel each side
(fov_ours = 2·atan(tan(fov_py/2) · w/(w − 1))); the tests pin both facts.

Images:
- numpy: (H, W, C) or (T, H, W, C), uint8 or float; torch: (C, H, W) or (..., T, C, H, W).
  The output has the input's kind, layout, dtype and device (uint8 → rounded and clipped).
- `fov_deg`: scalar horizontal FoV (vertical from the view's aspect, square pixels), an (h, v)
  pair, or per-frame arrays (T,) / (T, 2). `yaw`, `pitch`, `roll`: scalars or (T,) arrays.
  A single image (no frame axis) with per-frame arrays of length T renders T views.

Sampling is bilinear `grid_sample` over batches of frames (a few at a time, so buffers are
reused rather than page-faulted afresh). The equirect is padded by one pixel on each side so
that interpolation wraps at the ±180° seam (the columns) and across the poles (the row beyond
the pole is the edge row rolled by W/2), and never reads outside. Sampling grids depend only on
(angles, fov, shapes, dtype, device), so they are cached (LRU, bounded in bytes: `GRID_CACHE_BYTES`).
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from functools import wraps
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .rotations import rotation_matrix

__all__ = [
    "equirect_to_perspective",
    "perspective_to_equirect",
    "rotate_equirect",
    "circular_shift",
]

# Grids are keyed by every angle: a fixed rig (benchmarks, evaluation views, contact sheets) hits
# the cache, a fresh trajectory per training pair never does. The cache is therefore bounded by
# bytes, not entries (a 25-frame 512×1024 grid is ~100 MB, and every DataLoader worker holds its
# own cache), and shared by the grid builders.
GRID_CACHE_BYTES = 256 * 2**20


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    entries: int
    nbytes: int


_grid_cache: OrderedDict = OrderedDict()  # (builder name, args) → grid(s), least recently used first


def _nbytes(value) -> int:
    return sum(t.numel() * t.element_size() for t in (value if isinstance(value, tuple) else (value,)))


def _cached_grid(build):
    """LRU-cache a grid builder by its (hashable) arguments within GRID_CACHE_BYTES in total."""
    stats = {"hits": 0, "misses": 0}

    @wraps(build)
    def cached(*args):
        key = (build.__name__, args)
        if key in _grid_cache:
            stats["hits"] += 1
            _grid_cache.move_to_end(key)
            return _grid_cache[key]
        stats["misses"] += 1
        value = build(*args)
        size = _nbytes(value)
        if size <= GRID_CACHE_BYTES:
            _grid_cache[key] = value
            while sum(_nbytes(v) for v in _grid_cache.values()) > GRID_CACHE_BYTES:
                _grid_cache.popitem(last=False)
        return value

    def cache_info() -> CacheInfo:
        mine = [v for (name, _), v in _grid_cache.items() if name == build.__name__]
        return CacheInfo(stats["hits"], stats["misses"], len(mine), sum(map(_nbytes, mine)))

    def cache_clear() -> None:
        for key in [k for k in _grid_cache if k[0] == build.__name__]:
            del _grid_cache[key]

    cached.cache_info = cache_info
    cached.cache_clear = cache_clear
    return cached


# ----------------------------------------------------------------------------------------------
# Argument checking and layout
# ----------------------------------------------------------------------------------------------


def _torch_dtype(np_dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype


class _Image:
    """An image argument seen as an (N, C, H, W) torch view, plus how to give results back."""

    def __init__(self, x, name: str):
        self.name = name
        if isinstance(x, np.ndarray):
            self.kind = "numpy"
            if x.ndim not in (3, 4):
                raise ValueError(f"{name}: expected a numpy array (H, W, C) or (T, H, W, C), got shape {x.shape}")
            if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
                raise ValueError(f"{name}: expected uint8 or float dtype, got {x.dtype}")
            if not 1 <= x.shape[-1] <= 4:
                raise ValueError(
                    f"{name}: expected (H, W, C) channels-last with C in 1..4, got shape {x.shape} "
                    "(a channels-first array? numpy images are (…, H, W, C))"
                )
            self.frames = x.shape[0] if x.ndim == 4 else None
            self.batch = ()
            self.dtype = x.dtype
            self.device = torch.device("cpu")
            with warnings.catch_warnings():  # read-only arrays (e.g. decoded frames) are fine: never written
                warnings.simplefilter("ignore", UserWarning)
                t = torch.from_numpy(np.ascontiguousarray(x))
            t = t if x.ndim == 4 else t[None]
            self.nchw = t.permute(0, 3, 1, 2)  # channels-last view, no copy
        elif isinstance(x, torch.Tensor):
            self.kind = "torch"
            if x.ndim < 3:
                raise ValueError(f"{name}: expected a tensor (C, H, W) or (..., T, C, H, W), got shape {tuple(x.shape)}")
            if not (x.dtype == torch.uint8 or x.is_floating_point()):
                raise ValueError(f"{name}: expected uint8 or float dtype, got {x.dtype}")
            if not 1 <= x.shape[-3] <= 4:
                raise ValueError(
                    f"{name}: expected (..., C, H, W) channels-first with C in 1..4, got shape {tuple(x.shape)}"
                )
            self.frames = x.shape[-4] if x.ndim >= 4 else None
            self.batch = tuple(x.shape[:-4])
            self.dtype = x.dtype
            self.device = x.device
            self.nchw = x.reshape(-1, *x.shape[-3:])
        else:
            raise ValueError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
        self.channels, self.h, self.w = self.nchw.shape[1:]
        if self.h == 0 or self.w == 0:
            raise ValueError(f"{name}: empty image, shape {tuple(self.nchw.shape)}")
        # float64 stays float64; everything else is computed in float32 (grid_sample has no uint8).
        is_f64 = self.dtype in (np.float64, torch.float64)
        self.compute_dtype = torch.float64 if is_f64 else torch.float32

    def require_equirect(self):
        if self.w != 2 * self.h:
            raise ValueError(f"{self.name}: an equirect must be 2:1 (W == 2H), got H={self.h}, W={self.w}")

    def new_output(self, n: int, channels: int, h: int, w: int) -> tuple:
        """The result in its final layout and dtype, and an (n, C, h, w) view to write into."""
        if self.kind == "numpy":
            arr = np.empty((n, h, w, channels), dtype=self.dtype)
            return arr, torch.from_numpy(arr).permute(0, 3, 1, 2)
        out = torch.empty((n, channels, h, w), dtype=self.dtype, device=self.device)
        return out, out

    def finish(self, out, frames: int | None):
        """(N, …) result → the input's shape convention; `frames` None means a single image."""
        if frames is None:
            return out[0]
        if self.kind == "numpy":
            return out
        return out.reshape(*self.batch, frames, *out.shape[1:])

    def finish_mask(self, mask: torch.Tensor, frames: int | None):
        """(N, h, w) bool → numpy (…, h, w) or torch (…, 1, h, w)."""
        if self.kind == "numpy":
            mask = mask.cpu().numpy()
        else:
            mask = mask[:, None]
        return self.finish(mask, frames)


def _finite_array(value, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number or an array of numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite (no NaN/inf), got {value!r}")
    return arr


def _angle(value, name: str) -> np.ndarray:
    """Scalar or (T,) angle in degrees → 1-D float64 array (length 1 for a scalar)."""
    arr = _finite_array(value, name)
    if arr.ndim > 1:
        raise ValueError(f"{name}: expected a scalar or a (T,) array of degrees, got shape {arr.shape}")
    return arr.reshape(-1)


def _fov(value, name: str, aspect_hw: tuple[int, int]) -> np.ndarray:
    """FoV forms → (n, 2) float64 (horizontal, vertical) degrees, n = 1 for a shared FoV.

    A scalar is horizontal, the vertical following from `aspect_hw` = the perspective (h, w) so
    pixels are square. A 1-D pair is (h, v); (T,) is per-frame horizontal; (T, 2) per-frame pairs.
    """
    arr = _finite_array(value, name)
    if arr.ndim == 0:
        arr = arr.reshape(1)
        pairs = None
    elif arr.ndim == 1 and arr.shape[0] == 2:
        pairs = arr.reshape(1, 2)
    elif arr.ndim == 1:
        pairs = None
    elif arr.ndim == 2 and arr.shape[1] == 2:
        pairs = arr
    else:
        raise ValueError(f"{name}: expected a scalar, an (h, v) pair, (T,) or (T, 2) degrees, got shape {arr.shape}")
    if pairs is None:
        if np.any((arr <= 0) | (arr >= 180)):
            raise ValueError(f"{name}: field of view must lie in (0°, 180°), got {value!r}")
        h, w = aspect_hw
        v = np.rad2deg(2 * np.arctan(np.tan(np.deg2rad(arr) / 2) * h / w))
        pairs = np.stack([arr, v], -1)
    if np.any((pairs <= 0) | (pairs >= 180)):
        raise ValueError(f"{name}: field of view must lie in (0°, 180°), got {value!r}")
    return pairs


def _out_hw(value, name: str = "out_hw") -> tuple[int, int]:
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value)
    )
    if not ok:
        raise ValueError(f"{name}: expected (H, W), two positive ints, got {value!r}")
    return int(value[0]), int(value[1])


def _frames(image: _Image, **per_frame: np.ndarray) -> int | None:
    """The output frame count: the image's T, or the per-frame arrays' common length."""
    lengths = {k: len(v) for k, v in per_frame.items() if len(v) != 1}
    frames = image.frames
    for k, n in lengths.items():
        if frames is None:
            frames = n
        if n != frames:
            other = f"{image.name} has {frames} frames" if image.frames is not None else f"other per-frame arguments have length {frames}"
            raise ValueError(f"{k}: per-frame array of length {n}, but {other} (expected a scalar or length {frames})")
    return frames


def _poses(fov: np.ndarray, yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray):
    """Hashable per-frame parameters (cache keys); a single entry when all frames share them."""
    n = max(len(fov), len(yaw), len(pitch), len(roll))
    fov = np.broadcast_to(fov, (n, 2))
    ypr = np.stack([np.broadcast_to(a, (n,)) for a in (yaw, pitch, roll)], -1)
    return tuple(map(tuple, fov.tolist())), tuple(map(tuple, ypr.tolist()))


# ----------------------------------------------------------------------------------------------
# Sampling the sphere
# ----------------------------------------------------------------------------------------------


def _pad_equirect(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, C, H, W) → (N, C, H+2, W+2) in `dtype`, wrapped at the seam and across the poles.

    The row above the top row is the top row seen across the pole, i.e. rolled by W/2 (likewise
    at the bottom); then columns wrap. Keeps the input's memory format (numpy input arrives
    channels-last), so the uint8 → float conversion is one contiguous pass.
    """
    n, c, h, w = x.shape
    channels_last = c > 1 and x.stride(1) == 1
    shape = (n, h + 2, w + 2, c) if channels_last else (n, c, h + 2, w + 2)
    buf = torch.empty(shape, dtype=dtype, device=x.device)
    pad = buf.permute(0, 3, 1, 2) if channels_last else buf
    pad[:, :, 1:-1, 1:-1] = x
    pad[:, :, 0, 1:-1] = x[:, :, 0].roll(w // 2, -1)
    pad[:, :, -1, 1:-1] = x[:, :, -1].roll(w // 2, -1)
    pad[:, :, :, 0] = pad[:, :, :, -2]
    pad[:, :, :, -1] = pad[:, :, :, 1]
    return pad


def _equirect_grid(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, equi_hw: tuple[int, int], out: torch.Tensor):
    """World directions (x, y, z components, any length) → grid_sample coordinates (…, 2) into
    the padded equirect, written into `out`.

    lon/lat → pixel index (centres at +0.5, supp. eq. 12 with our axes), +1 for the padding,
    normalised with align_corners=True over the padded size.
    """
    h, w = equi_hw
    lon = torch.atan2(x, z)  # atan2(0, 0) = 0 at the poles: no NaN
    lat = torch.atan2(-y, torch.hypot(x, z))
    # Padded column index (lon/2π + 1/2)·W − 1/2 + 1, normalised over W + 1 with
    # align_corners=True, simplifies to lon·W/(π(W+1)); rows alike with −lat and π/2.
    out[..., 0] = lon.mul_(w / (math.pi * (w + 1)))
    out[..., 1] = lat.mul_(-2.0 * h / (math.pi * (h + 1)))
    return out


def _chunk_frames(image: _Image) -> int:
    """Frames per grid_sample call: big enough to batch, small enough (≤ ~8 MB of padded
    float input) that buffers are recycled by the allocator instead of freshly page-faulted,
    which costs more than the sampling itself on small VMs."""
    itemsize = 8 if image.compute_dtype == torch.float64 else 4
    frame_bytes = image.channels * (image.h + 2) * (image.w + 2) * itemsize
    return max(1, int(8e6 // frame_bytes))


def _grid_sample_frames(image: _Image, frames: int | None, grid: torch.Tensor, prepare, out_hw, align_corners: bool, mask=None):
    """Bilinear grid_sample of every frame, chunk by chunk, written into the final output.

    grid: (T or 1, h, w, 2) for the T output frames (images are batch-major: image i uses
    grid row i % T). prepare: (n, C, H, W) input chunk → float chunk to sample.
    mask: optional (T or 1, h, w) bool; samples outside it are set to 0.
    """
    src = image.nchw
    n = src.shape[0] if image.frames is not None else (frames or 1)
    out, out_nchw = image.new_output(n, image.channels, *out_hw)
    grid = grid.to(image.device)
    single = prepare(src) if image.frames is None else None  # one image, many views: prepare once
    is_uint8 = image.dtype in (np.uint8, torch.uint8)
    step = _chunk_frames(image)
    for i in range(0, n, step):
        rows = range(i, min(i + step, n))
        x = single.expand(len(rows), *single.shape[1:]) if single is not None else prepare(src[rows.start : rows.stop])
        if grid.shape[0] == 1:
            g = grid.expand(len(rows), *grid.shape[1:])
            m = None if mask is None else mask.expand(len(rows), *mask.shape[1:])
        else:
            idx = torch.tensor([r % grid.shape[0] for r in rows], device=grid.device)
            g = grid.index_select(0, idx)
            m = None if mask is None else mask.index_select(0, idx)
        y = F.grid_sample(x, g, mode="bilinear", padding_mode="border", align_corners=align_corners)
        if m is not None:
            y.mul_(m[:, None].to(y.dtype))
        if is_uint8:  # bilinear weights are convex, so y ∈ [0, 255]: +0.5 then truncation rounds
            y.add_(0.5)
        for c in range(y.shape[1]):  # per channel: much faster than torch's generic NCHW → NHWC copy
            out_nchw[rows.start : rows.stop, c].copy_(y[:, c])  # also converts the dtype
    return image.finish(out, frames)


def _sample_equirect(image: _Image, frames: int | None, grid: torch.Tensor, out_hw) -> torch.Tensor:
    """Bilinear samples of the equirect (padded: wraps at seam and poles) at the grid."""
    return _grid_sample_frames(
        image, frames, grid, lambda x: _pad_equirect(x, image.compute_dtype), out_hw, align_corners=True
    )


def _rotations(angles: tuple, dtype: torch.dtype) -> torch.Tensor:
    ypr = torch.tensor(angles, dtype=torch.float64)
    return rotation_matrix(ypr[:, 0], ypr[:, 1], ypr[:, 2]).to(dtype)


def _equirect_dirs(equi_hw: tuple, dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit directions at the pixel centres of an equirect: x, y, z each broadcastable to (H, W)."""
    h, w = equi_hw
    lon = torch.deg2rad((torch.arange(w, dtype=torch.float64) + 0.5) / w * 360 - 180)
    lat = torch.deg2rad(90 - (torch.arange(h, dtype=torch.float64) + 0.5) / h * 180)[:, None]
    x, y, z = lat.cos() * lon.sin(), -lat.sin(), lat.cos() * lon.cos()  # lonlat_to_xyz
    return x.to(dtype), y.to(dtype), z.to(dtype)


# The grids below are built frame by frame into one preallocated tensor: (h, w)-sized
# temporaries are recycled by the allocator, where whole-batch temporaries would be fresh memory.


@_cached_grid
def _perspective_grid(fovs: tuple, angles: tuple, pers_hw: tuple, equi_hw: tuple, dtype, device) -> torch.Tensor:
    """(T, h, w, 2): where each perspective pixel's ray lands in the padded equirect."""
    h, w = pers_hw
    tan_half = torch.tan(torch.deg2rad(torch.tensor(fovs, dtype=torch.float64)) / 2)  # (T, 2)
    u = ((torch.arange(w, dtype=torch.float64) + 0.5) / w * 2 - 1).to(dtype)  # −1 … 1 across the edges
    v = ((torch.arange(h, dtype=torch.float64) + 0.5) / h * 2 - 1).to(dtype)[:, None]
    R = _rotations(angles, torch.float64)  # (T, 3, 3), columns = camera axes in the world
    grid = torch.empty((len(angles), h, w, 2), dtype=dtype)
    for t in range(len(angles)):
        # Ray (u·tan(fov_h/2), v·tan(fov_v/2), 1) in the camera; world d = R · ray.
        Rs = R[t] * torch.stack([tan_half[t, 0], tan_half[t, 1], torch.ones((), dtype=torch.float64)])
        x, y, z = (float(Rs[i, 0]) * u + float(Rs[i, 1]) * v + float(Rs[i, 2]) for i in range(3))
        _equirect_grid(x, y, z, equi_hw, grid[t])
    return grid.to(device)


@_cached_grid
def _rotation_grid(angles: tuple, equi_hw: tuple, dtype, device) -> torch.Tensor:
    """(T, H, W, 2): the input pixel seen at each output pixel of a rotated panorama (d → R·d)."""
    dx, dy, dz = _equirect_dirs(equi_hw, dtype)
    R = _rotations(angles, torch.float64)
    grid = torch.empty((len(angles), *equi_hw, 2), dtype=dtype)
    for t in range(len(angles)):
        x, y, z = (float(R[t, i, 0]) * dx + float(R[t, i, 1]) * dy + float(R[t, i, 2]) * dz for i in range(3))
        _equirect_grid(x, y, z, equi_hw, grid[t])
    return grid.to(device)


@_cached_grid
def _inverse_grid(fovs: tuple, angles: tuple, equi_hw: tuple, dtype, device):
    """(T, H, W, 2) grid into the perspective image (align_corners=False) and (T, H, W) mask.

    Each equirect pixel's direction is taken into the camera (R^T·d) and projected; the mask
    keeps directions in front of the camera (z > 0) that land inside the image edges.
    """
    dx, dy, dz = _equirect_dirs(equi_hw, dtype)
    R = _rotations(angles, torch.float64)
    tan_half = torch.tan(torch.deg2rad(torch.tensor(fovs, dtype=torch.float64)) / 2)  # (T, 2)
    grid = torch.empty((len(angles), *equi_hw, 2), dtype=dtype)
    mask = torch.empty((len(angles), *equi_hw), dtype=torch.bool)
    for t in range(len(angles)):
        # Camera coordinates R^T·d, with x and y pre-divided by tan(fov/2) so the image edges are ±1.
        scale = (float(tan_half[t, 0]), float(tan_half[t, 1]), 1.0)
        x, y, z = (
            float(R[t, 0, i]) / scale[i] * dx + float(R[t, 1, i]) / scale[i] * dy + float(R[t, 2, i]) / scale[i] * dz
            for i in range(3)
        )
        front = z > 1e-6
        inv_z = torch.where(front, z, 1.0).reciprocal_()
        gu, gv = x.mul_(inv_z), y.mul_(inv_z)
        m = mask[t]
        torch.le(gu.abs(), 1.0, out=m)
        m &= gv.abs() <= 1.0
        m &= front
        grid[t, ..., 0] = gu.masked_fill_(~m, 0.0)
        grid[t, ..., 1] = gv.masked_fill_(~m, 0.0)
    return grid.to(device), mask.to(device)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def equirect_to_perspective(equi, fov_deg, yaw=0.0, pitch=0.0, roll=0.0, out_hw=None):
    """Render perspective views of an equirect (supp. eqs. 6–12, inverted, our axes).

    equi: numpy (H, W, C) / (T, H, W, C) or torch (C, H, W) / (..., T, C, H, W), W == 2H.
    out_hw: (h, w) of the perspective view. Returns the views in the input's kind and dtype.
    At roll = 0 this agrees with py360convert's e2p(u_deg=yaw, v_deg=pitch) up to its
    half-pixel FoV convention (see the module docstring).
    """
    image = _Image(equi, "equi")
    image.require_equirect()
    pers_hw = _out_hw(out_hw)
    fov = _fov(fov_deg, "fov_deg", pers_hw)
    yaw, pitch, roll = _angle(yaw, "yaw"), _angle(pitch, "pitch"), _angle(roll, "roll")
    frames = _frames(image, fov_deg=fov, yaw=yaw, pitch=pitch, roll=roll)
    fovs, angles = _poses(fov, yaw, pitch, roll)
    grid = _perspective_grid(fovs, angles, pers_hw, (image.h, image.w), image.compute_dtype, image.device)
    return _sample_equirect(image, frames, grid, pers_hw)


def perspective_to_equirect(pers, fov_deg, yaw=0.0, pitch=0.0, roll=0.0, out_hw=None):
    """Project perspective frames onto an equirect canvas: returns (canvas, mask).

    For each equirect pixel its direction is projected into the camera; mask = in front of
    the camera and inside the image; the canvas is black (0) outside the mask.
    out_hw: (H, W) of the equirect, W == 2H. A scalar fov_deg is horizontal, the vertical
    following from the perspective image's aspect.
    """
    image = _Image(pers, "pers")
    equi_hw = _out_hw(out_hw)
    if equi_hw[1] != 2 * equi_hw[0]:
        raise ValueError(f"out_hw: an equirect must be 2:1 (W == 2H), got {equi_hw}")
    fov = _fov(fov_deg, "fov_deg", (image.h, image.w))
    yaw, pitch, roll = _angle(yaw, "yaw"), _angle(pitch, "pitch"), _angle(roll, "roll")
    frames = _frames(image, fov_deg=fov, yaw=yaw, pitch=pitch, roll=roll)
    fovs, angles = _poses(fov, yaw, pitch, roll)
    grid, mask = _inverse_grid(fovs, angles, equi_hw, image.compute_dtype, image.device)
    canvas = _grid_sample_frames(
        image, frames, grid, lambda x: x.to(image.compute_dtype), equi_hw, align_corners=False, mask=mask
    )
    n_out = image.nchw.shape[0] if image.frames is not None else (frames or 1)
    full_mask = mask.repeat(n_out // mask.shape[0], 1, 1) if mask.shape[0] > 1 else mask.expand(n_out, -1, -1).clone()
    return canvas, image.finish_mask(full_mask, frames)


def rotate_equirect(equi, yaw=0.0, pitch=0.0, roll=0.0):
    """The panorama as seen from a camera rotated by (yaw, pitch, roll): the view that was at
    those angles becomes the image centre, so for any view
    equirect_to_perspective(rotate_equirect(e, *a), fov, *b) == equirect_to_perspective(e, fov, *(R(a)·R(b))).
    Angles: scalars or (T,) arrays (one rotation per frame).
    """
    image = _Image(equi, "equi")
    image.require_equirect()
    yaw, pitch, roll = _angle(yaw, "yaw"), _angle(pitch, "pitch"), _angle(roll, "roll")
    frames = _frames(image, yaw=yaw, pitch=pitch, roll=roll)
    _, angles = _poses(np.zeros((1, 2)), yaw, pitch, roll)
    grid = _rotation_grid(angles, (image.h, image.w), image.compute_dtype, image.device)
    return _sample_equirect(image, frames, grid, (image.h, image.w))


def circular_shift(equi, yaw_deg):
    """Horizontal roll of the panorama by yaw_deg: the content at longitude yaw_deg moves to the
    centre (the same as rotate_equirect(equi, yaw_deg, 0, 0)). Exact when yaw_deg·W/360 is a
    whole number of pixels, linear interpolation between the two neighbouring rolls otherwise.
    yaw_deg: scalar or (T,) for one shift per frame.
    """
    image = _Image(equi, "equi")
    image.require_equirect()
    yaw = _angle(yaw_deg, "yaw_deg")
    _frames(image, yaw_deg=yaw)  # validates per-frame lengths
    is_numpy = image.kind == "numpy"
    axis = -2 if is_numpy else -1
    roll = np.roll if is_numpy else (lambda a, s, axis: torch.roll(a, s, dims=axis))

    def shift(x, deg):
        s = deg / 360.0 * image.w
        k = round(s)
        if abs(s - k) < 1e-6:  # whole pixels: an exact roll, any dtype
            return roll(x, -k, axis)
        k = math.floor(s)
        f = s - k
        lo, hi = roll(x, -k, axis), roll(x, -k - 1, axis)
        if is_numpy:
            out = (1 - f) * lo.astype(np.float64) + f * hi.astype(np.float64)
            if x.dtype == np.uint8:
                out = np.clip(np.round(out), 0, 255)
            return out.astype(x.dtype)
        out = (1 - f) * lo.to(image.compute_dtype) + f * hi.to(image.compute_dtype)
        if x.dtype == torch.uint8:
            out = out.round().clamp(0, 255)
        return out.to(x.dtype)

    if len(yaw) == 1:
        return shift(equi, float(yaw[0]))
    if image.frames is None:  # one image, T shifts
        parts = [shift(equi, float(d)) for d in yaw]
        return np.stack(parts) if is_numpy else torch.stack(parts)
    frame_axis = 0 if is_numpy else equi.ndim - 4
    if is_numpy:
        return np.stack([shift(equi[t], float(d)) for t, d in enumerate(yaw)], frame_axis)
    return torch.stack([shift(equi.select(frame_axis, t), float(d)) for t, d in enumerate(yaw)], frame_axis)
