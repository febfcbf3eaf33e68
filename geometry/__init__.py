"""Sphere maths for argus360: rotations, perspective ↔ equirect projection, equirect rotation
and circular shift, simulated camera trajectories (paper eq. 3). numpy + torch only.

Conventions (docs: DESIGN.md "Geometry conventions"; axes in `geometry.rotations`): degrees
everywhere; yaw = pitch = roll = 0 looks at the equirect centre; +yaw right, +pitch up, +roll
turns the camera clockwise; R = R_yaw · R_pitch · R_roll.
"""

from .projection import circular_shift, equirect_to_perspective, perspective_to_equirect, rotate_equirect
from .rotations import equirect_lonlat, euler_from_matrix, lonlat_to_xyz, rotation_matrix, xyz_to_lonlat
from .trajectory import Trajectory, TrajectoryConfig, simulate_trajectory

__all__ = [
    "equirect_to_perspective",
    "perspective_to_equirect",
    "rotate_equirect",
    "circular_shift",
    "rotation_matrix",
    "euler_from_matrix",
    "lonlat_to_xyz",
    "xyz_to_lonlat",
    "equirect_lonlat",
    "TrajectoryConfig",
    "Trajectory",
    "simulate_trajectory",
]
