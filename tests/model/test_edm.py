"""EDM functions and the latitude weight equal their formulas (Karras et al. 2022; paper eq. 1)."""

import math

import numpy as np
import pytest
import torch

from model import edm

SIGMAS = torch.tensor([0.002, 0.05, 0.5, 1.0, 3.7, 80.0, 700.0], dtype=torch.float64)


def test_preconditioning_matches_formulas():
    for s in SIGMAS.tolist():
        t = torch.tensor(s, dtype=torch.float64)
        assert float(edm.c_skip(t)) == pytest.approx(1 / (s**2 + 1), rel=1e-12)
        assert float(edm.c_out(t)) == pytest.approx(-s / math.sqrt(s**2 + 1), rel=1e-12)
        assert float(edm.c_in(t)) == pytest.approx(1 / math.sqrt(s**2 + 1), rel=1e-12)
        assert float(edm.c_noise(t)) == pytest.approx(0.25 * math.log(s), rel=1e-12, abs=1e-12)
        assert float(edm.loss_weight(t)) == pytest.approx((s**2 + 1) / s**2, rel=1e-12)


def test_preconditioning_with_sigma_data():
    s, sd = torch.tensor(2.0, dtype=torch.float64), 0.5
    assert float(edm.c_skip(s, sd)) == pytest.approx(0.25 / 4.25)
    assert float(edm.c_out(s, sd)) == pytest.approx(-1.0 / math.sqrt(4.25))
    assert float(edm.loss_weight(s, sd)) == pytest.approx(4.25 / 1.0)


def test_denoise_is_eq2():
    y = torch.randn(3, 2, 4, 5, 6, dtype=torch.float64)
    sigma = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    seen = {}

    def F(x_in, c_noise):
        seen["x_in"], seen["c_noise"] = x_in, c_noise
        return torch.ones_like(x_in) * 2.0

    out = edm.denoise(F, y, sigma)
    for b, s in enumerate(sigma.tolist()):
        expect = y[b] / (s**2 + 1) + (-s / math.sqrt(s**2 + 1)) * 2.0
        torch.testing.assert_close(out[b], expect)
        torch.testing.assert_close(seen["x_in"][b], y[b] / math.sqrt(s**2 + 1))
    torch.testing.assert_close(seen["c_noise"], 0.25 * sigma.log())


def test_denoiser_reaches_clean_target_at_optimum():
    # With F = the ideal target (x0 - c_skip y)/c_out, eq. 2 returns x0 exactly: the loss can reach 0.
    x0, eps = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    sigma = torch.tensor([0.3, 5.0], dtype=torch.float64)
    s = edm.append_dims(sigma, 4)
    y = x0 + s * eps
    F = lambda x_in, c: (x0 - edm.c_skip(s) * y) / edm.c_out(s)
    torch.testing.assert_close(edm.denoise(F, y, sigma), x0)
    assert float(edm.edm_loss(edm.denoise(F, y, sigma), x0, sigma).abs().max()) < 1e-20


def test_sample_sigma_is_lognormal():
    g = torch.Generator().manual_seed(0)
    s = edm.sample_sigma(20000, p_mean=-1.0, p_std=0.7, generator=g)
    assert s.shape == (20000,) and bool((s > 0).all())
    assert float(s.log().mean()) == pytest.approx(-1.0, abs=0.03)
    assert float(s.log().std()) == pytest.approx(0.7, abs=0.03)


def test_p_mean_schedule_supplement():
    # stage 1: −1 → 0 over the run; stage 2: constant 1
    assert edm.p_mean_at(0, 100_000, -1.0, 0.0) == -1.0
    assert edm.p_mean_at(50_000, 100_000, -1.0, 0.0) == pytest.approx(-0.5)
    assert edm.p_mean_at(100_000, 100_000, -1.0, 0.0) == 0.0
    assert edm.p_mean_at(200_000, 100_000, -1.0, 0.0) == 0.0
    assert edm.p_mean_at(7, 20_000, 1.0, 1.0) == 1.0


def test_edm_loss_weights():
    d, x = torch.zeros(2, 1, 2, 4), torch.ones(2, 1, 2, 4)
    sigma = torch.tensor([1.0, 2.0])
    lat = torch.tensor([[[3.0] * 4, [1.0] * 4]])  # (1, H=2, W=4)
    loss = edm.edm_loss(d, x, sigma, lat)
    torch.testing.assert_close(loss, torch.tensor([2.0 * 2.0, 1.25 * 2.0]))
    with pytest.raises(ValueError, match="denoised"):
        edm.edm_loss(d, x[:, :, :1], sigma)


@pytest.mark.parametrize("height", [1, 2, 7, 16, 384])
@pytest.mark.parametrize("delta", [0.0, 0.01, 0.3])
def test_latitude_weight_paper_formula(height, delta):
    if height == 1 and delta == 0.0:
        w = edm.latitude_weight(height, 6, "paper", delta)  # single row: h = 0.5, weight 0.25 → 1
        assert torch.allclose(w, torch.ones(1, 1, 6))
        return
    w = edm.latitude_weight(height, 6, "paper", delta)
    assert w.shape == (1, height, 6) and w.dtype == torch.float32
    h = (np.arange(height) + 0.5) / height
    lam = (0.5 - np.abs(0.5 - h)) ** 2 + delta
    expect = lam / lam.mean()
    np.testing.assert_allclose(w[0, :, 0].numpy(), expect, rtol=1e-6)
    np.testing.assert_allclose(w[0].numpy(), np.repeat(expect[:, None], 6, 1), rtol=1e-6)
    assert float(w.mean()) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(w, w.flip(1))  # symmetric about the equator


def test_latitude_weight_authors_formula():
    height = 12
    w = edm.latitude_weight(height, 24, "authors")
    lat = 90 - 180 * (np.arange(height) + 0.5) / height  # row-centre latitude, degrees
    d = np.abs(lat) / 90
    lam = np.sqrt(1 - d**2) + 0.25
    np.testing.assert_allclose(w[0, :, 3].numpy(), lam / lam.mean(), rtol=1e-6)
    assert float(w.mean()) == pytest.approx(1.0, abs=1e-6)
    # it is flatter than the paper's λ(h): its pole/equator ratio is larger
    p = edm.latitude_weight(height, 24, "paper")
    assert w[0, 0, 0] / w[0, height // 2, 0] > p[0, 0, 0] / p[0, height // 2, 0]


def test_latitude_weight_bad_input():
    with pytest.raises(ValueError, match="kind"):
        edm.latitude_weight(8, 16, "cosine")
    with pytest.raises(ValueError, match="positive"):
        edm.latitude_weight(0, 16)
    with pytest.raises(ValueError, match="delta"):
        edm.latitude_weight(8, 16, delta=-0.1)


def test_karras_sigmas_eq5():
    s = edm.karras_sigmas(5, sigma_min=0.002, sigma_max=700.0, rho=7.0)
    assert s.shape == (6,) and float(s[-1]) == 0.0
    assert float(s[0]) == pytest.approx(700.0, rel=1e-5) and float(s[4]) == pytest.approx(0.002, rel=1e-5)
    i = 2
    expect = (700 ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 700 ** (1 / 7))) ** 7
    assert float(s[i]) == pytest.approx(expect, rel=1e-5)
    assert bool((s[:-1] > s[1:]).all())
    with pytest.raises(ValueError):
        edm.karras_sigmas(0)


def test_euler_sampler_exact_for_zero_data():
    # D ≡ 0 (all data at the origin): the ODE dx/dσ = x/σ is linear in σ, Euler is exact: x(σ) = x0·σ/σ_0.
    x = torch.randn(2, 3, dtype=torch.float64)
    out = edm.euler_step(x, torch.zeros_like(x), 4.0, 1.0)
    torch.testing.assert_close(out, x / 4.0)
    # and the full sampler ends exactly at D's constant when D is constant
    c = torch.full((1, 2, 3), 0.7)
    res = edm.sample_euler(lambda x, s: c.expand_as(x), torch.randn(1, 2, 3), edm.karras_sigmas(4, 0.01, 10.0))
    torch.testing.assert_close(res, c)


def test_sigma_bin_edges_quantiles():
    edges = edm.sigma_bin_edges(0.5, 2.0, n=4)
    assert len(edges) == 3 and edges[1] == pytest.approx(math.exp(0.5))
    g = torch.Generator().manual_seed(1)
    s = edm.sample_sigma(40000, 0.5, 2.0, g).numpy()
    counts = np.bincount(np.digitize(s, edges), minlength=4) / len(s)
    np.testing.assert_allclose(counts, 0.25, atol=0.01)
