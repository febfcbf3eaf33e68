import numpy as np
import pytest
import torch

from geometry import equirect_lonlat, euler_from_matrix, lonlat_to_xyz, rotation_matrix, xyz_to_lonlat


def test_rotation_matrix_is_a_rotation_and_round_trips_random_angles():
    rng = np.random.default_rng(1)
    yaw, roll = rng.uniform(-180, 180, (2, 500))
    pitch = rng.uniform(-89, 89, 500)
    R = rotation_matrix(yaw, pitch, roll)
    assert R.shape == (500, 3, 3)
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    y2, p2, r2 = euler_from_matrix(R)
    np.testing.assert_allclose(y2, yaw, atol=1e-9)
    np.testing.assert_allclose(p2, pitch, atol=1e-9)
    np.testing.assert_allclose(r2, roll, atol=1e-9)


def test_rotation_order_is_yaw_pitch_roll():
    def axis(angle, i):  # rotation_matrix with a single non-zero angle
        a = [0.0, 0.0, 0.0]
        a[i] = angle
        return rotation_matrix(*a)

    R = rotation_matrix(30.0, -20.0, 50.0)
    np.testing.assert_allclose(R, axis(30.0, 0) @ axis(-20.0, 1) @ axis(50.0, 2), atol=1e-12)


def test_axes_follow_the_conventions():
    # Axes: x right, y down, z forward. The camera's forward column is R·e_z.
    forward = lambda R: R[:, 2]  # noqa: E731
    np.testing.assert_allclose(forward(rotation_matrix(90, 0, 0)), [1, 0, 0], atol=1e-12)  # +yaw: right
    np.testing.assert_allclose(forward(rotation_matrix(0, 90, 0)), [0, -1, 0], atol=1e-12)  # +pitch: up
    # +roll: the camera's right axis R·e_x turns towards +y (down): clockwise as seen from behind.
    right = rotation_matrix(0, 0, 30)[:, 0]
    np.testing.assert_allclose(right, [np.cos(np.pi / 6), np.sin(np.pi / 6), 0], atol=1e-12)


def test_euler_at_gimbal_lock_reproduces_the_matrix():
    for pitch in (90.0, -90.0):
        R = rotation_matrix(40.0, pitch, 25.0)
        y, p, r = euler_from_matrix(R)
        assert abs(p - pitch) < 1e-6 and r == 0.0
        np.testing.assert_allclose(rotation_matrix(y, p, r), R, atol=1e-9)


def test_torch_matches_numpy():
    rng = np.random.default_rng(2)
    a = rng.uniform(-80, 80, (3, 7))
    Rn = rotation_matrix(*a)
    Rt = rotation_matrix(*(torch.from_numpy(x) for x in a))
    assert isinstance(Rt, torch.Tensor) and Rt.dtype == torch.float64
    np.testing.assert_allclose(Rt.numpy(), Rn, atol=1e-12)
    for got, want in zip(euler_from_matrix(Rt), a):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-9)


def test_lonlat_xyz_round_trip_and_axes():
    np.testing.assert_allclose(lonlat_to_xyz(0, 0), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(lonlat_to_xyz(90, 0), [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(lonlat_to_xyz(0, 90), [0, -1, 0], atol=1e-12)
    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(-179, 179, 200), rng.uniform(-89, 89, 200)
    xyz = lonlat_to_xyz(lon, lat)
    np.testing.assert_allclose(np.linalg.norm(xyz, axis=-1), 1.0, atol=1e-12)
    lon2, lat2 = xyz_to_lonlat(3.0 * xyz)  # any length
    np.testing.assert_allclose(lon2, lon, atol=1e-9)
    np.testing.assert_allclose(lat2, lat, atol=1e-9)
    lon_t, lat_t = xyz_to_lonlat(torch.from_numpy(xyz))
    np.testing.assert_allclose(lon_t.numpy(), lon, atol=1e-9)
    # A view's forward direction has the view's yaw and pitch as longitude and latitude.
    lon_f, lat_f = xyz_to_lonlat(rotation_matrix(-120.0, 35.0, 10.0)[:, 2])
    assert abs(lon_f + 120.0) < 1e-9 and abs(lat_f - 35.0) < 1e-9
    # No NaN at the poles.
    assert np.isfinite(xyz_to_lonlat(np.array([0.0, -1.0, 0.0]))).all()


def test_equirect_lonlat_pixel_centres():
    lon, lat = equirect_lonlat(4, 8)
    assert lon.shape == lat.shape == (4, 8)
    np.testing.assert_allclose(lon[0], [-157.5, -112.5, -67.5, -22.5, 22.5, 67.5, 112.5, 157.5])
    np.testing.assert_allclose(lat[:, 0], [67.5, 22.5, -22.5, -67.5])
    with pytest.raises(ValueError, match="w"):
        equirect_lonlat(4, 0)


def test_bad_matrix_shape():
    with pytest.raises(ValueError, match=r"R: expected shape \(\.\.\., 3, 3\)"):
        euler_from_matrix(np.eye(4))
