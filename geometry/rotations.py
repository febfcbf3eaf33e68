"""Sphere maths: camera rotations and equirectangular coordinates.

World and camera axes (one right-handed frame, OpenCV-like, used everywhere in `geometry`):

    x: right      (longitude +90°, latitude 0°)
    y: down       (latitude −90°, the south pole / nadir)
    z: forward    (longitude 0°, latitude 0°: the centre of the equirect image)

A camera at yaw = pitch = roll = 0 has its axes aligned with the world: it looks along +z with
image columns along +x and image rows along +y. The camera-to-world rotation is

    R = R_yaw · R_pitch · R_roll            (roll first, then pitch, then yaw)

    R_roll(r)  about z: +roll turns the camera clockwise about its viewing axis (seen from
               behind the camera), so the scene in its image turns counter-clockwise;
    R_pitch(p) about x: +pitch tilts the view up (towards −y, latitude +90°);
    R_yaw(y)   about y: +yaw turns the view right (towards +x, longitude +90°).

A world direction d = R · d_cam. Longitude / latitude of a direction (x, y, z):
lon = atan2(x, z) ∈ [−180°, 180°], lat = atan2(−y, hypot(x, z)) ∈ [−90°, 90°].

Equirect images are H×W with pixel centres at +0.5: longitude −180° at the left edge to
+180° at the right edge, latitude +90° at the top edge to −90° at the bottom edge.

Functions accept numpy arrays (float64 maths) or torch tensors (maths in their dtype/device)
and return the same kind. All angles are in degrees.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "rotation_matrix",
    "euler_from_matrix",
    "lonlat_to_xyz",
    "xyz_to_lonlat",
    "equirect_lonlat",
]


def _is_torch(*xs) -> bool:
    return any(isinstance(x, torch.Tensor) for x in xs)


def _as_torch(*xs):
    """Tensors with a common float dtype/device, for mixed scalar/tensor arguments."""
    ref = next(x for x in xs if isinstance(x, torch.Tensor))
    dtype = ref.dtype if ref.is_floating_point() else torch.float64
    return [torch.as_tensor(x, dtype=dtype, device=ref.device) for x in xs]


def rotation_matrix(yaw, pitch, roll):
    """Camera-to-world rotation R = R_yaw · R_pitch · R_roll (supp. eqs. 8–10, our axes).

    Angles in degrees, scalars or broadcastable arrays of shape (...); returns (..., 3, 3).
    """
    if _is_torch(yaw, pitch, roll):
        y, p, r = (torch.deg2rad(a) for a in _as_torch(yaw, pitch, roll))
        y, p, r = torch.broadcast_tensors(y, p, r)
        cy, sy, cp, sp, cr, sr = y.cos(), y.sin(), p.cos(), p.sin(), r.cos(), r.sin()
        stack = torch.stack
    else:
        y, p, r = np.broadcast_arrays(*(np.deg2rad(np.asarray(a, dtype=np.float64)) for a in (yaw, pitch, roll)))
        cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
        stack = np.stack
    # The product R_yaw · R_pitch · R_roll written out, with
    # R_yaw = [[cy,0,sy],[0,1,0],[-sy,0,cy]], R_pitch = [[1,0,0],[0,cp,-sp],[0,sp,cp]],
    # R_roll = [[cr,-sr,0],[sr,cr,0],[0,0,1]].
    rows = [
        [cy * cr + sy * sp * sr, -cy * sr + sy * sp * cr, sy * cp],
        [cp * sr, cp * cr, -sp],
        [-sy * cr + cy * sp * sr, sy * sr + cy * sp * cr, cy * cp],
    ]
    return stack([stack(row, -1) for row in rows], -2)


def euler_from_matrix(R, eps: float = 1e-9):
    """Inverse of `rotation_matrix`: (..., 3, 3) → (yaw, pitch, roll) in degrees.

    yaw ∈ (−180, 180], pitch ∈ [−90, 90], roll ∈ (−180, 180]. At gimbal lock (pitch = ±90°)
    only yaw ∓ roll is defined; we report roll = 0 and put the whole turn in yaw.
    """
    if _is_torch(R):
        atan2, hypot, where, deg = torch.atan2, torch.hypot, torch.where, torch.rad2deg
    else:
        R = np.asarray(R, dtype=np.float64)
        atan2, hypot, where, deg = np.arctan2, np.hypot, np.where, np.rad2deg
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"R: expected shape (..., 3, 3), got {tuple(R.shape)}")
    # The forward column R·e_z = (cp·sy, −sp, cp·cy); row 1 = (cp·sr, cp·cr, −sp).
    cos_p = hypot(R[..., 0, 2], R[..., 2, 2])
    pitch = atan2(-R[..., 1, 2], cos_p)
    locked = cos_p < eps
    yaw = where(locked, atan2(-R[..., 2, 0], R[..., 0, 0]), atan2(R[..., 0, 2], R[..., 2, 2]))
    roll = where(locked, 0.0 * pitch, atan2(R[..., 1, 0], R[..., 1, 1]))
    return deg(yaw), deg(pitch), deg(roll)


def lonlat_to_xyz(lon_deg, lat_deg):
    """Unit directions (..., 3) for longitudes/latitudes in degrees (see the module axes)."""
    if _is_torch(lon_deg, lat_deg):
        lon, lat = (torch.deg2rad(a) for a in _as_torch(lon_deg, lat_deg))
        lon, lat = torch.broadcast_tensors(lon, lat)
        return torch.stack([lat.cos() * lon.sin(), -lat.sin(), lat.cos() * lon.cos()], -1)
    lon, lat = np.broadcast_arrays(np.deg2rad(np.asarray(lon_deg, np.float64)), np.deg2rad(np.asarray(lat_deg, np.float64)))
    return np.stack([np.cos(lat) * np.sin(lon), -np.sin(lat), np.cos(lat) * np.cos(lon)], -1)


def xyz_to_lonlat(xyz):
    """Directions (..., 3) (any length > 0) → (lon_deg, lat_deg), each (...)."""
    if _is_torch(xyz):
        x, y, z = xyz.unbind(-1)
        return torch.rad2deg(torch.atan2(x, z)), torch.rad2deg(torch.atan2(-y, torch.hypot(x, z)))
    xyz = np.asarray(xyz, np.float64)
    if xyz.shape[-1:] != (3,):
        raise ValueError(f"xyz: expected shape (..., 3), got {xyz.shape}")
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.rad2deg(np.arctan2(x, z)), np.rad2deg(np.arctan2(-y, np.hypot(x, z)))


def equirect_lonlat(h: int, w: int):
    """Longitude and latitude in degrees at the pixel centres of an h×w equirect, each (h, w).

    Column j has lon = (j + 0.5)/w·360 − 180; row i has lat = 90 − (i + 0.5)/h·180.
    """
    for name, v in (("h", h), ("w", w)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    lon = (np.arange(w) + 0.5) / w * 360.0 - 180.0
    lat = 90.0 - (np.arange(h) + 0.5) / h * 180.0
    lon_grid, lat_grid = np.meshgrid(lon, lat)
    return lon_grid, lat_grid
