from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from geometry import Trajectory, TrajectoryConfig, simulate_trajectory

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "geometry" / "trajectory.yaml"

# Every term of eq. 3 switched off; tests switch on the one they measure.
QUIET = dict(
    yaw_offset_deg=0.0,
    pitch_offset_deg=0.0,
    roll_amplitude_deg=0.0,
    pitch_amplitude_deg=0.0,
    yaw_amplitude_deg=0.0,
    roll_noise_deg=0.0,
    pitch_noise_deg=0.0,
    yaw_noise_deg=0.0,
    pitch_drift_deg_per_frame=0.0,
    yaw_drift_deg_per_frame=0.0,
)


def config(**overrides) -> TrajectoryConfig:
    return TrajectoryConfig.from_dict({**QUIET, **overrides})


def test_yaml_defaults_are_the_dataclass_defaults():
    if not CONFIG.exists():
        pytest.skip(f"{CONFIG} not found")
    loaded = TrajectoryConfig.from_dict(yaml.safe_load(CONFIG.read_text()))
    assert loaded == TrajectoryConfig()
    assert loaded.hfov_deg == (30.0, 120.0) and loaded.vfov_deg == (30.0, 120.0)  # paper
    assert TrajectoryConfig.from_dict(loaded.to_dict()) == loaded


def test_shapes_and_reproducibility():
    a = simulate_trajectory(25, np.random.default_rng(7))
    b = simulate_trajectory(25, np.random.default_rng(7))
    c = simulate_trajectory(25, np.random.default_rng(8))
    assert isinstance(a, Trajectory)
    assert a.yaw.shape == a.pitch.shape == a.roll.shape == (25,)
    np.testing.assert_array_equal(a.yaw, b.yaw)
    assert not np.allclose(a.yaw, c.yaw)
    assert simulate_trajectory(5, 7).fov_deg == simulate_trajectory(5, np.random.default_rng(7)).fov_deg


def test_drift_slope_recovered_by_regression():
    for d_y, d_p in [(2.0, -0.4), (-1.25, 0.3)]:
        tr = simulate_trajectory(400, np.random.default_rng(0), config(yaw_drift_deg_per_frame=d_y, pitch_drift_deg_per_frame=d_p, yaw_noise_deg=0.5, pitch_noise_deg=0.5))
        k = np.arange(400)
        assert abs(np.polyfit(k, tr.yaw, 1)[0] - d_y) < 0.005
        assert abs(np.polyfit(k, tr.pitch, 1)[0] - d_p) < 0.005
        assert np.allclose(tr.roll, 0.0)  # roll has no drift term


def test_oscillation_amplitude_and_frequency():
    tr = simulate_trajectory(720, np.random.default_rng(1), config(roll_amplitude_deg=4.0, pitch_amplitude_deg=2.0, omega_deg_per_frame=10.0))
    assert 3.95 < np.abs(tr.roll).max() <= 4.0 + 1e-9
    assert 1.95 < np.abs(tr.pitch).max() <= 2.0 + 1e-9
    # ω = 10°/frame: a period of 36 frames, so 720 frames hold 20 periods.
    spectrum = np.abs(np.fft.rfft(tr.roll))
    assert np.argmax(spectrum) == 20


def test_noise_std_follows_config():
    tr = simulate_trajectory(4000, np.random.default_rng(2), config(roll_noise_deg=0.7, pitch_noise_deg=0.2, yaw_noise_deg=1.5))
    assert abs(tr.roll.std() - 0.7) < 0.04
    assert abs(tr.pitch.std() - 0.2) < 0.015
    assert abs(tr.yaw.std() - 1.5) < 0.08
    assert abs(tr.yaw.mean()) < 0.1


def test_fov_within_range_and_yaw_offset_uniform():
    rng = np.random.default_rng(3)
    cfg = TrajectoryConfig.from_dict({**QUIET, "yaw_offset_deg": [-180.0, 180.0], "vfov_deg": [40.0, 50.0]})
    draws = [simulate_trajectory(2, rng, cfg) for _ in range(2000)]
    hfov = np.array([t.fov_deg[0] for t in draws])
    vfov = np.array([t.fov_deg[1] for t in draws])
    assert hfov.min() >= 30.0 and hfov.max() <= 120.0
    assert hfov.min() < 32.0 and hfov.max() > 118.0  # spans the range
    assert vfov.min() >= 40.0 and vfov.max() <= 50.0
    offsets = np.array([t.yaw[0] for t in draws])
    assert stats.kstest(offsets, stats.uniform(loc=-180, scale=360).cdf).pvalue > 0.01
    assert stats.kstest(hfov, stats.uniform(loc=30, scale=90).cdf).pvalue > 0.01
    np.testing.assert_allclose([t.params["yaw_offset_deg"] for t in draws], offsets)


def test_default_trajectories_stay_plausible():
    rng = np.random.default_rng(4)
    for _ in range(200):
        tr = simulate_trajectory(25, rng)
        assert np.abs(tr.pitch).max() < 45.0 and np.abs(tr.roll).max() < 10.0
        assert np.all(np.isfinite(tr.yaw))


@pytest.mark.parametrize(
    "d,match",
    [
        ({"hfov": [30, 120]}, r"unknown keys \['hfov'\]"),
        ({"yaw_drift_deg_per_frame": [2.0, 1.0]}, r"yaw_drift_deg_per_frame: expected finite low <= high"),
        ({"vfov_deg": [30.0, 190.0]}, r"vfov_deg: field of view must lie in \(0°, 180°\)"),
        ({"roll_noise_deg": [-1.0, 1.0]}, r"roll_noise_deg: noise standard deviations must be >= 0"),
        ({"phase_deg": "a lot"}, r"phase_deg: expected a number or a \[low, high\] pair"),
        ({"omega_deg_per_frame": [float("nan"), 1.0]}, r"omega_deg_per_frame: expected finite"),
    ],
)
def test_config_rejects_bad_values(d, match):
    with pytest.raises(ValueError, match=match):
        TrajectoryConfig.from_dict(d)


def test_simulate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_frames: expected a positive int"):
        simulate_trajectory(0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rng: expected a numpy.random.Generator"):
        simulate_trajectory(5, "seed")
    with pytest.raises(ValueError, match="config: expected a TrajectoryConfig"):
        simulate_trajectory(5, 0, {"hfov_deg": [30, 40]})
