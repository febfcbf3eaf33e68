import numpy as np
import pytest
import torch

from geometry import (
    circular_shift,
    equirect_lonlat,
    equirect_to_perspective,
    euler_from_matrix,
    lonlat_to_xyz,
    perspective_to_equirect,
    rotate_equirect,
    rotation_matrix,
)

py360convert = pytest.importorskip("py360convert", reason="py360convert (dev extra) is the oracle for e2p")


def blob(h, w, lon, lat, sigma_deg=3.0):
    """A smooth spherical Gaussian marker centred at (lon, lat), float32 (h, w, 3)."""
    lo, la = equirect_lonlat(h, w)
    cos_angle = lonlat_to_xyz(lo, la) @ lonlat_to_xyz(lon, lat)
    angle = np.rad2deg(np.arccos(np.clip(cos_angle, -1, 1)))
    return np.repeat(np.exp(-0.5 * (angle / sigma_deg) ** 2)[..., None], 3, -1).astype(np.float32)


def centroid(img):
    """(row, col) intensity centroid of a (h, w, C) image, in pixel-index coordinates."""
    m = img[..., 0].astype(np.float64)
    m = np.where(m > 0.1 * m.max(), m, 0)
    rows, cols = np.indices(m.shape)
    return (rows * m).sum() / m.sum(), (cols * m).sum() / m.sum()


def fov_as_py360(fov_deg, n):
    """py360convert spans its FoV between the outermost pixel *centres*, we between the edges."""
    return float(np.rad2deg(2 * np.arctan(np.tan(np.deg2rad(fov_deg) / 2) * (n - 1) / n)))


# ---------------------------------------------------------------------------------------------
# Conventions, pinned by where markers land
# ---------------------------------------------------------------------------------------------


def test_yaw_90_is_three_quarters_of_the_width_and_centred_in_a_yaw_90_view():
    h, w = 64, 128
    equi = blob(h, w, lon=90.0, lat=0.0)
    # In the equirect: longitude 90° is 3/4 of the width (index 0.75·W − 0.5, centres at +0.5).
    r, c = centroid(equi)
    assert abs(c - (0.75 * w - 0.5)) < 0.05 and abs(r - (h / 2 - 0.5)) < 0.05
    # A view at yaw = 90° sees it at its centre; a view at yaw = 80° sees it right of centre.
    view = equirect_to_perspective(equi, 60.0, yaw=90.0, out_hw=(33, 33))
    r, c = centroid(view)
    assert abs(r - 16) < 0.05 and abs(c - 16) < 0.05
    r, c = centroid(equirect_to_perspective(equi, 60.0, yaw=80.0, out_hw=(33, 33)))
    assert c > 20 and abs(r - 16) < 0.05
    # Back: a view at yaw = 90° with a centred marker lands at 3/4 of the width.
    pers = np.zeros((33, 33, 3), np.float32)
    pers[15:18, 15:18] = 1.0
    canvas, mask = perspective_to_equirect(pers, 60.0, yaw=90.0, out_hw=(h, w))
    r, c = centroid(canvas)
    assert abs(c - (0.75 * w - 0.5)) < 0.5 and abs(r - (h / 2 - 0.5)) < 0.5
    cols = np.nonzero(mask.any(0))[0]
    assert abs(cols.mean() - (0.75 * w - 0.5)) < 0.5


def test_positive_pitch_moves_up():
    h, w = 64, 128
    equi = blob(h, w, lon=0.0, lat=30.0)
    r, c = centroid(equirect_to_perspective(equi, 60.0, pitch=30.0, out_hw=(33, 33)))
    assert abs(r - 16) < 0.05 and abs(c - 16) < 0.05
    # At pitch 0 the marker (above the horizon) is in the upper half of the view.
    r, _ = centroid(equirect_to_perspective(equi, 90.0, pitch=0.0, out_hw=(33, 33)))
    assert r < 10
    # A view pitched up by 30° covers latitude 30° at its centre row: H/3 − 0.5 in the equirect.
    pers = np.ones((9, 9, 3), np.float32)
    canvas, mask = perspective_to_equirect(pers, 20.0, pitch=30.0, out_hw=(h, w))
    rows = np.nonzero(mask.any(1))[0]
    assert abs(rows.mean() - (h / 3 - 0.5)) < 0.5


def test_positive_roll_turns_the_camera_clockwise():
    # +roll turns the camera clockwise about its viewing axis, so the scene turns
    # counter-clockwise in its image: a marker straight right of the view centre (lon 10°) appears
    # up and to the right. With roll r the camera ray of world direction d is R_roll(r)^T·d =
    # (cos r·sin 10°, −sin r·sin 10°, cos 10°): x shrinks by cos r, y = −… is above (y is down).
    h, w, n, fov, r_deg = 128, 256, 65, 60.0, 30.0
    equi = blob(h, w, lon=10.0, lat=0.0, sigma_deg=1.5)
    r, c = centroid(equirect_to_perspective(equi, fov, roll=r_deg, out_hw=(n, n)))
    f = (n / 2) / np.tan(np.deg2rad(fov / 2))  # focal length in pixels
    t = np.tan(np.deg2rad(10.0))
    centre = (n - 1) / 2
    expected_c = centre + f * np.cos(np.deg2rad(r_deg)) * t
    expected_r = centre - f * np.sin(np.deg2rad(r_deg)) * t
    assert r < centre - 3 and c > centre + 3  # above right
    assert abs(r - expected_r) < 0.3 and abs(c - expected_c) < 0.3
    # And negative roll puts it below right.
    r, c = centroid(equirect_to_perspective(equi, fov, roll=-r_deg, out_hw=(n, n)))
    assert r > centre + 3 and c > centre + 3


# ---------------------------------------------------------------------------------------------
# Agreement with py360convert at roll 0
# ---------------------------------------------------------------------------------------------

VIEWS = [  # (fov (h, v), yaw, pitch)
    ((90.0, 90.0), 0.0, 0.0),
    ((60.0, 45.0), 45.0, 20.0),
    ((100.0, 100.0), -120.0, -40.0),
    ((120.0, 80.0), 170.0, 10.0),
    ((70.0, 70.0), 30.0, 75.0),
    ((30.0, 30.0), -179.0, 0.0),
]


@pytest.mark.parametrize("fov,yaw,pitch", VIEWS)
def test_agrees_with_py360convert_e2p(texture, psnr, fov, yaw, pitch):
    # Same fov_deg: our FoV spans the image edges, py360convert's the outer pixel centres, a
    # half-pixel difference at the border: ≥ 40 dB at a 256 view.
    ours = equirect_to_perspective(texture, fov, yaw, pitch, out_hw=(256, 256))
    ref = py360convert.e2p(texture, fov_deg=fov, u_deg=yaw, v_deg=pitch, out_hw=(256, 256))
    assert psnr(ours, ref) >= 40.0
    # With the FoV converted to its convention the two samplers agree to rounding.
    hw = (48, 64)
    ours = equirect_to_perspective(texture, fov, yaw, pitch, out_hw=hw)
    ref = py360convert.e2p(
        texture, fov_deg=(fov_as_py360(fov[0], hw[1]), fov_as_py360(fov[1], hw[0])), u_deg=yaw, v_deg=pitch, out_hw=hw
    )
    assert psnr(ours, ref) >= 55.0


# ---------------------------------------------------------------------------------------------
# Inverse, seam, poles, rotation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fov,yaw,pitch,roll", [((90.0, 90.0), 20.0, 10.0, 0.0), ((100.0, 70.0), 175.0, -30.0, 25.0), ((60.0, 60.0), 0.0, 88.0, -40.0)])
def test_round_trip_equirect_perspective_equirect(texture, psnr, fov, yaw, pitch, roll):
    h, w = texture.shape[:2]
    pers = equirect_to_perspective(texture, fov, yaw, pitch, roll, out_hw=(128, 128))
    canvas, mask = perspective_to_equirect(pers, fov, yaw, pitch, roll, out_hw=(h, w))
    assert mask.dtype == bool and mask.shape == (h, w) and 0.02 < mask.mean() < 0.5
    assert np.all(canvas[~mask] == 0)  # black outside the mask
    assert psnr(canvas, texture, mask) >= 35.0


def test_mask_is_the_view_footprint():
    # A 90°×90° view at the centre covers |lon| ≤ 45° on the equator, nothing behind.
    h, w = 64, 128
    pers = np.ones((8, 8, 3), np.float32)
    _, mask = perspective_to_equirect(pers, 90.0, out_hw=(h, w))
    lon, lat = equirect_lonlat(h, w)
    equator = np.abs(lat) < 2
    np.testing.assert_array_equal(mask[equator], np.abs(lon[equator]) <= 45)
    assert not mask[:, np.abs(lon[0]) > 90].any()


def test_view_across_the_seam_is_continuous(texture, psnr):
    # The ±180° seam runs through the middle of a yaw = 180° view: it must equal the same view
    # of the panorama rolled by half a turn (whose content is continuous at its centre).
    shifted = circular_shift(texture, 180.0)
    a = equirect_to_perspective(texture, 60.0, yaw=180.0, out_hw=(64, 64))
    b = equirect_to_perspective(shifted, 60.0, yaw=0.0, out_hw=(64, 64))
    np.testing.assert_allclose(a, b, atol=1e-4)
    # No jump at the centre column: neighbouring columns differ like the rest of the view.
    step = np.abs(np.diff(a, axis=1)).max(axis=(0, 2))
    assert step[31] < 3 * np.median(step) + 1e-3
    # The inverse also wraps: a view at yaw 180° lands on both edges, shifted like the forward.
    canvas_a, mask_a = perspective_to_equirect(a, 60.0, yaw=180.0, out_hw=texture.shape[:2])
    canvas_b, mask_b = perspective_to_equirect(b, 60.0, yaw=0.0, out_hw=texture.shape[:2])
    assert mask_a[:, 0].any() and mask_a[:, -1].any()
    np.testing.assert_array_equal(circular_shift(mask_a[..., None].astype(np.uint8), 180.0)[..., 0], mask_b.astype(np.uint8))
    np.testing.assert_allclose(circular_shift(canvas_a, 180.0), canvas_b, atol=1e-4)


@pytest.mark.parametrize("pitch", [90.0, -90.0])
def test_views_through_the_poles(texture, psnr, pitch):
    view = equirect_to_perspective(texture, 90.0, yaw=30.0, pitch=pitch, out_hw=(64, 64))
    assert np.isfinite(view).all()
    # At the pole only yaw ∓ roll matters: (yaw 30, roll 0) is (yaw 0, roll ∓30).
    same = equirect_to_perspective(texture, 90.0, yaw=0.0, pitch=pitch, roll=-30.0 * np.sign(pitch), out_hw=(64, 64))
    np.testing.assert_allclose(view, same, atol=1e-4)
    # And it matches the straight-ahead view of the panorama rotated to bring the pole forward.
    rotated = rotate_equirect(texture, 30.0, pitch, 0.0)
    assert np.isfinite(rotated).all()
    assert psnr(equirect_to_perspective(rotated, 90.0, out_hw=(64, 64)), view) >= 35.0
    canvas, mask = perspective_to_equirect(view, 90.0, yaw=30.0, pitch=pitch, out_hw=(32, 64))
    assert np.isfinite(canvas).all()
    pole_row = 0 if pitch > 0 else -1
    assert mask[pole_row].all()  # the whole pole row is seen


def test_rotate_equirect_consistent_with_views(texture, psnr):
    a = (40.0, -25.0, 15.0)
    b = (-70.0, 30.0, -20.0)
    rotated = rotate_equirect(texture, *a)
    combined = euler_from_matrix(rotation_matrix(*a) @ rotation_matrix(*b))
    got = equirect_to_perspective(rotated, 75.0, *b, out_hw=(64, 64))
    want = equirect_to_perspective(texture, 75.0, *(float(x) for x in combined), out_hw=(64, 64))
    assert psnr(got, want) >= 35.0
    # The view that was at `a` is now the centre view.
    assert psnr(equirect_to_perspective(rotated, 75.0, out_hw=(64, 64)), equirect_to_perspective(texture, 75.0, *a, out_hw=(64, 64))) >= 35.0
    # Identity and pure yaw are (near) exact.
    np.testing.assert_allclose(rotate_equirect(texture, 0, 0, 0), texture, atol=1e-4)
    np.testing.assert_allclose(rotate_equirect(texture, 90.0), circular_shift(texture, 90.0), atol=1e-4)


def test_circular_shift_exact_and_fractional():
    rng = np.random.default_rng(5)
    equi = rng.integers(0, 256, (2, 16, 32, 3), dtype=np.uint8)
    out = circular_shift(equi, 45.0)  # 45° of 32 px = 4 px
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.roll(equi, -4, axis=2))
    # Content at longitude +45° moves to the centre.
    lon, _ = equirect_lonlat(16, 32)
    col_45 = int(np.argmin(np.abs(lon[0] - 45 + 180 / 32)))  # left neighbour of lon 45
    np.testing.assert_array_equal(out[:, :, 16 - 1], equi[:, :, col_45])
    # Half a pixel: the mean of the two neighbouring rolls.
    x = rng.random((16, 32, 3))
    half = circular_shift(x, 360.0 / 32 / 2)
    np.testing.assert_allclose(half, 0.5 * (x + np.roll(x, -1, axis=1)), atol=1e-12)
    # torch layout, per-frame shifts.
    t = torch.from_numpy(equi).permute(0, 3, 1, 2)
    out_t = circular_shift(t, np.array([45.0, -90.0]))
    assert torch.equal(out_t[0], t[0].roll(-4, -1))
    assert torch.equal(out_t[1], t[1].roll(8, -1))


# ---------------------------------------------------------------------------------------------
# Layouts, dtypes, per-frame arrays
# ---------------------------------------------------------------------------------------------


def test_numpy_and_torch_agree(texture):
    frames = np.stack([texture, texture[::-1].copy()])
    yaw, pitch, roll = np.array([10.0, -150.0]), np.array([5.0, 60.0]), np.array([0.0, 20.0])
    pn = equirect_to_perspective(frames, (80.0, 60.0), yaw, pitch, roll, out_hw=(24, 32))
    tt = torch.from_numpy(frames).permute(0, 3, 1, 2)
    pt = equirect_to_perspective(tt, (80.0, 60.0), yaw, pitch, roll, out_hw=(24, 32))
    assert pn.shape == (2, 24, 32, 3) and pn.dtype == np.float32
    assert pt.shape == (2, 3, 24, 32) and pt.dtype == torch.float32
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), pn, atol=1e-6)
    cn, mn = perspective_to_equirect(pn, (80.0, 60.0), yaw, pitch, roll, out_hw=(32, 64))
    ct, mt = perspective_to_equirect(pt, (80.0, 60.0), yaw, pitch, roll, out_hw=(32, 64))
    assert mn.shape == (2, 32, 64) and mt.shape == (2, 1, 32, 64) and mt.dtype == torch.bool
    np.testing.assert_array_equal(mt[:, 0].numpy(), mn)
    np.testing.assert_allclose(ct.permute(0, 2, 3, 1).numpy(), cn, atol=1e-6)
    # Batch dims in front of the frame axis.
    pb = equirect_to_perspective(tt[None].expand(3, -1, -1, -1, -1), (80.0, 60.0), yaw, pitch, roll, out_hw=(24, 32))
    assert pb.shape == (3, 2, 3, 24, 32)
    assert torch.equal(pb[2], pt)


def test_dtypes_round_trip(texture):
    u8 = (texture * 255).round().astype(np.uint8)
    out = equirect_to_perspective(u8, 70.0, 20.0, out_hw=(32, 32))
    ref = equirect_to_perspective(u8.astype(np.float64), 70.0, 20.0, out_hw=(32, 32))
    assert out.dtype == np.uint8 and ref.dtype == np.float64
    np.testing.assert_array_equal(out, np.clip(np.round(ref), 0, 255).astype(np.uint8))
    t16 = torch.from_numpy(texture).permute(2, 0, 1).to(torch.float16)
    assert equirect_to_perspective(t16, 70.0, out_hw=(8, 8)).dtype == torch.float16
    canvas, _ = perspective_to_equirect(out, 70.0, 20.0, out_hw=(16, 32))
    assert canvas.dtype == np.uint8


def test_per_frame_arrays_match_single_frames(texture):
    yaw = np.array([0.0, 90.0, -170.0])
    fov = np.array([[60.0, 40.0], [90.0, 90.0], [120.0, 30.0]])
    frames = np.stack([texture] * 3)
    many = equirect_to_perspective(frames, fov, yaw, 10.0, out_hw=(16, 24))
    # A single panorama with per-frame arrays renders one view per entry.
    from_one = equirect_to_perspective(texture, fov, yaw, 10.0, out_hw=(16, 24))
    assert many.shape == from_one.shape == (3, 16, 24, 3)
    for t in range(3):
        single = equirect_to_perspective(texture, tuple(fov[t]), yaw[t], 10.0, out_hw=(16, 24))
        np.testing.assert_allclose(many[t], single, atol=1e-6)
        np.testing.assert_allclose(from_one[t], single, atol=1e-6)
    # Per-frame horizontal FoVs (T,) with vertical from the aspect.
    h_only = equirect_to_perspective(texture, fov[:, 0], yaw, out_hw=(16, 16))
    np.testing.assert_allclose(h_only[1], equirect_to_perspective(texture, (90.0, 90.0), 90.0, out_hw=(16, 16)), atol=1e-6)
    canvases, masks = perspective_to_equirect(many, fov, yaw, 10.0, out_hw=(32, 64))
    assert canvases.shape == (3, 32, 64, 3) and masks.shape == (3, 32, 64)
    _, m1 = perspective_to_equirect(many[1], tuple(fov[1]), yaw[1], 10.0, out_hw=(32, 64))
    np.testing.assert_array_equal(masks[1], m1)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(equi=np.zeros((8, 16))), r"equi: expected a numpy array \(H, W, C\)"),
        (dict(equi=np.zeros((3, 8, 16))), r"equi: expected \(H, W, C\) channels-last"),
        (dict(equi=np.zeros((8, 16, 3), np.int32)), r"equi: expected uint8 or float"),
        (dict(equi=torch.zeros(5, 8, 16)), r"equi: expected \(\.\.\., C, H, W\)"),
        (dict(equi=np.zeros((8, 12, 3))), r"equi: an equirect must be 2:1"),
        (dict(fov_deg=0.0), r"fov_deg: field of view must lie in \(0°, 180°\)"),
        (dict(fov_deg=180.0), r"fov_deg"),
        (dict(fov_deg=(90.0, -5.0)), r"fov_deg"),
        (dict(fov_deg=float("nan")), r"fov_deg: must be finite"),
        (dict(fov_deg=np.ones((2, 3)) * 60), r"fov_deg: expected a scalar, an \(h, v\) pair"),
        (dict(yaw=float("nan")), r"yaw: must be finite"),
        (dict(pitch=float("inf")), r"pitch: must be finite"),
        (dict(roll=np.ones((2, 2))), r"roll: expected a scalar or a \(T,\) array"),
        (dict(out_hw=(0, 8)), r"out_hw: expected \(H, W\), two positive ints"),
        (dict(out_hw=(8,)), r"out_hw"),
        (dict(out_hw=(8.0, 8)), r"out_hw"),
        (dict(out_hw=None), r"out_hw"),
        (dict(equi=np.zeros((3, 8, 16, 3)), yaw=np.zeros(4)), r"yaw: per-frame array of length 4, but equi has 3 frames"),
        (dict(yaw=np.zeros(2), pitch=np.zeros(3)), r"pitch: per-frame array of length 3, but other per-frame arguments have length 2"),
    ],
)
def test_equirect_to_perspective_rejects_bad_input(kwargs, match):
    args = dict(equi=np.zeros((8, 16, 3), np.float32), fov_deg=60.0, yaw=0.0, pitch=0.0, roll=0.0, out_hw=(4, 4))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        equirect_to_perspective(**args)


def test_other_functions_reject_bad_input():
    pers = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"out_hw: an equirect must be 2:1"):
        perspective_to_equirect(pers, 60.0, out_hw=(8, 8))
    with pytest.raises(ValueError, match=r"pers: expected"):
        perspective_to_equirect(np.zeros((4, 4, 7)), 60.0, out_hw=(8, 16))
    with pytest.raises(ValueError, match=r"pitch: per-frame array of length 3"):
        perspective_to_equirect(np.zeros((2, 4, 4, 3)), 60.0, pitch=np.zeros(3), out_hw=(8, 16))
    with pytest.raises(ValueError, match=r"equi: an equirect must be 2:1"):
        rotate_equirect(np.zeros((8, 8, 3)), 10.0)
    with pytest.raises(ValueError, match=r"roll: must be finite"):
        rotate_equirect(np.zeros((8, 16, 3)), 10.0, 0.0, float("nan"))
    with pytest.raises(ValueError, match=r"yaw_deg: per-frame array of length 3, but equi has 2 frames"):
        circular_shift(np.zeros((2, 8, 16, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=r"equi: expected a numpy array or torch tensor"):
        circular_shift([[0.0]], 10.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_tensor_stays_on_device(texture):
    t = torch.from_numpy(texture).permute(2, 0, 1)
    out = equirect_to_perspective(t.cuda(), 70.0, 20.0, out_hw=(32, 32))
    assert out.device.type == "cuda"
    assert torch.allclose(out.cpu(), equirect_to_perspective(t, 70.0, 20.0, out_hw=(32, 32)), atol=1e-4)


def test_grids_are_cached_by_their_arguments(texture):
    from geometry.projection import _perspective_grid

    args = dict(fov_deg=(61.0, 47.0), yaw=np.array([1.5, 2.5]), pitch=3.5, out_hw=(8, 12))
    frames = np.stack([texture, texture])
    first = equirect_to_perspective(frames, **args)
    hits = _perspective_grid.cache_info().hits
    second = equirect_to_perspective(frames, **args)
    assert _perspective_grid.cache_info().hits == hits + 1
    np.testing.assert_array_equal(first, second)
    equirect_to_perspective(frames, **{**args, "pitch": 3.6})  # any change is a new grid
    assert _perspective_grid.cache_info().hits == hits + 1


def test_grid_cache_stays_within_its_byte_budget(texture, monkeypatch):
    import geometry.projection as projection

    grid_bytes = 2 * 8 * 12 * 2 * 4  # two float32 (8, 12, 2) frames
    monkeypatch.setattr(projection, "GRID_CACHE_BYTES", 3 * grid_bytes)
    frames = np.stack([texture, texture]).astype(np.float32)
    for k in range(6):  # fresh poses each call, as in training
        equirect_to_perspective(frames, 60.0, yaw=np.array([k, k + 0.5]), out_hw=(8, 12))
        assert sum(projection._nbytes(v) for v in projection._grid_cache.values()) <= 3 * grid_bytes
    # the most recent poses are still cached, the oldest were evicted
    hits = projection._perspective_grid.cache_info().hits
    equirect_to_perspective(frames, 60.0, yaw=np.array([5, 5.5]), out_hw=(8, 12))
    equirect_to_perspective(frames, 60.0, yaw=np.array([0, 0.5]), out_hw=(8, 12))
    assert projection._perspective_grid.cache_info().hits == hits + 1


def test_read_only_numpy_input_is_accepted_silently(texture):
    import warnings

    ro = texture.copy()
    ro.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = equirect_to_perspective(ro, 60.0, out_hw=(8, 8))
    np.testing.assert_array_equal(out, equirect_to_perspective(texture, 60.0, out_hw=(8, 8)))
