"""Generation (model.generate) with a tiny random SVD on the CPU, and the spherical metadata.

The tiny model is written with the real diffusers classes (`model.network.build_tiny_svd`) and
loaded back through `from_pretrained`, the path a user runs with real weights.
"""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from geometry import equirect_to_perspective
from model import edm
from model.generate import (GenerateConfig, blend_weights, blended_decode, column_step, generate_panorama,
                            guidance_ramp, guided_denoiser, main, plan_windows, resolve_model, sample_latents,
                            scheduler_sigmas, seam_discontinuity)
from model.network import build_tiny_svd, load_svd, vae_decode, vae_encode
from model.poses import Poses
from shards.spherical import read_spherical_v1
from shards.video import decode_frames, probe, write_mp4




@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_svd(tmp_path_factory.mktemp("tiny_svd"), num_frames=6)


@pytest.fixture(scope="module")
def svd(tiny):
    return load_svd(tiny)


@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory, make_texture):
    """A perspective clip (8 frames, 64×48, FoV 90°) panning right over a textured panorama."""
    path = tmp_path_factory.mktemp("clip") / "pers.mp4"
    n = np.arange(8.0)
    write_mp4(path, equirect_to_perspective(make_texture(256, 512), 90, 3 * n, 0 * n, 0 * n, out_hw=(48, 64)), 5, crf=12)
    return path


# ------------------------------------------------------------------------------------ windows
@pytest.mark.parametrize("N, T, S, n", [(1, 25, 5, 1), (25, 25, 5, 1), (26, 25, 5, 2), (45, 25, 5, 2),
                                        (46, 25, 5, 3), (65, 25, 5, 3), (100, 8, 2, 17), (10, 6, 0, 2)])
def test_windows_follow_T_and_S(N, T, S, n):
    windows = plan_windows(N, T, S)
    assert len(windows) == n
    assert windows[0].start == 0 and windows[0].context == 0
    assert all(w.stop - w.start == T for w in windows)
    for a, b in zip(windows, windows[1:]):
        assert a.stop - b.start == S == b.context  # consecutive windows overlap by exactly S
    assert windows[-1].stop >= N  # the windows cover the input (padded at the end)
    assert windows[-1].start + windows[-1].context < N  # and the last one still has new input frames
    with pytest.raises(ValueError, match="context"):
        plan_windows(N, T, T)


def test_context_frames_are_the_previous_windows_generated_frames(svd, tiny, make_texture):
    """11 frames, T = 6, S = 2 → 3 windows; window k's first S condition frames are exactly window
    k−1's last S decoded frames, and the output keeps them."""
    n = np.arange(11.0)
    pers = equirect_to_perspective(make_texture(128, 256), 90, 2 * n, 0 * n, 0 * n, out_hw=(24, 32))
    poses = Poses(90.0, 2 * n, 0 * n, 0 * n)
    cfg = GenerateConfig(height=16, window=6, context=2, steps=1, guidance=(1.0, 1.0))
    trace = []
    out = generate_panorama(svd, pers, poses, cfg, scheduler_sigmas(tiny, 1), fps_id=5.0, trace=trace)
    assert [(t["window"].start, t["window"].stop) for t in trace] == [(0, 6), (4, 10), (8, 14)]
    for prev, cur in zip(trace, trace[1:]):
        torch.testing.assert_close(cur["condition"][:2], prev["frames"][-2:], rtol=0, atol=0)
        # the rest of the window is the projected input: black (−1) outside the mask
        assert (cur["condition"][2:] == -1).float().mean() > 0.3
    assert out["panorama"].shape == (11, 16, 32, 3) and out["panorama"].dtype == np.uint8
    expected = ((trace[1]["frames"][2] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out["panorama"][6], expected)  # frame 6 comes from window 1 (4 + S)


# -------------------------------------------------------------------------- blended decoding
def test_blend_weights_are_eq5_and_band_limited():
    W = 64
    x = torch.arange(W) + 0.5
    torch.testing.assert_close(blend_weights(W, 0.5), 1 - 2 * (x / W - 0.5).abs())
    h = blend_weights(W, 0.25)
    assert torch.all(h[16:48] == 1) and h[0] < h[8] < 1 and torch.allclose(h, h.flip(0))
    with pytest.raises(ValueError, match="band"):
        blend_weights(W, 0.75)


def test_blended_decoding_equals_plain_for_a_border_free_decoder():
    """With a decoder that has no border effects, the rolled decoding is the same image: eq. 4 changes nothing."""
    z = torch.randn(1, 2, 4, 4, 8)
    decode = lambda z: z[:, :, :3].repeat_interleave(2, -1).repeat_interleave(2, -2)  # noqa: E731
    torch.testing.assert_close(blended_decode(decode, z, 0.5), decode(z))


def test_blended_decoding_leaves_a_smaller_seam(svd):
    """Same latents (of a seamless panorama): the decoded columns either side of ±180° differ less
    with blended decoding than with plain decoding."""
    H, W = 32, 64
    lon = (torch.arange(W) + 0.5) / W * 2 * np.pi
    lat = (torch.arange(H) + 0.5) / H * np.pi
    img = torch.stack([torch.sin(lon)[None].expand(H, W), torch.cos(2 * lon)[None] * torch.sin(lat)[:, None],
                       torch.cos(lat)[:, None].expand(H, W)]) * 0.8
    frames = img[None, None].repeat(1, 4, 1, 1, 1)
    z = vae_encode(svd.vae, frames) * svd.vae.config.scaling_factor

    def decode(z):
        return vae_decode(svd.vae, z)
    plain, blended = decode(z), blended_decode(decode, z, 0.5)
    s_plain, s_blend = seam_discontinuity(plain), seam_discontinuity(blended)
    print(f"seam |Y[..., 0] − Y[..., W−1]|: plain {s_plain:.4f}, blended {s_blend:.4f} "
          f"(interior column step {column_step(plain):.4f})")
    assert s_blend < 0.6 * s_plain
    # away from the seam (h = 1 where band < ½) the blend is the plain decoding
    narrow = blended_decode(decode, z, 0.25)
    torch.testing.assert_close(narrow[..., 16:48], plain[..., 16:48])


# ----------------------------------------------------------------------------------- sampling
def test_schedule_and_step_match_diffusers_euler(tiny):
    """Our loop (edm.denoise + edm.euler_step on the scheduler's σ) is diffusers' EulerDiscreteScheduler."""
    from diffusers import EulerDiscreteScheduler

    sigmas = scheduler_sigmas(tiny, 10)
    torch.testing.assert_close(sigmas, edm.karras_sigmas(10), rtol=1e-4, atol=1e-6)
    sched = EulerDiscreteScheduler.from_pretrained(tiny, subfolder="scheduler")
    sched.set_timesteps(10)
    x, F_out = torch.randn(1, 2, 4, 4, 8), torch.randn(1, 2, 4, 4, 8)
    t = sched.timesteps[3]
    sched._step_index = 3
    torch.testing.assert_close(sched.scale_model_input(x, t), edm.c_in(sigmas[3]) * x)
    sched._step_index = 3
    expected = sched.step(F_out, t, x).prev_sample
    denoised = edm.denoise(lambda x_in, c: F_out, x, sigmas[3:4])
    torch.testing.assert_close(edm.euler_step(x, denoised, float(sigmas[3]), float(sigmas[4])), expected,
                               rtol=1e-4, atol=1e-4)
    assert float(t) == pytest.approx(float(edm.c_noise(sigmas[3])), rel=1e-5)


def test_guidance_ramps_over_frames(svd):
    """Frame 0 gets guidance g_min = 1 (the conditional prediction); g = 0 everywhere is the
    unconditional one (zero CLIP tokens and condition latents)."""
    T = 4
    g = torch.Generator().manual_seed(0)
    cond, clip = torch.randn(1, T, 4, 8, 16, generator=g), torch.randn(1, T, 32, generator=g)
    ids = torch.tensor([[4.0, 127.0, 0.02]])
    x, sigma = torch.randn(1, T, 4, 8, 16, generator=g), torch.tensor([2.0])
    with torch.no_grad():
        d_ramp = guided_denoiser(svd.unet, cond, clip, ids, guidance_ramp(T, 1.0, 3.0))(x, sigma)
        d_cond = guided_denoiser(svd.unet, cond, clip, ids, torch.ones(T))(x, sigma)
        d_zero = guided_denoiser(svd.unet, cond, clip, ids, torch.zeros(T))(x, sigma)
        d_uncond = guided_denoiser(svd.unet, torch.zeros_like(cond), torch.zeros_like(clip), ids, torch.ones(T))(x, sigma)
    torch.testing.assert_close(d_ramp[:, 0], d_cond[:, 0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(d_ramp[:, -1], d_cond[:, -1], atol=1e-3)
    torch.testing.assert_close(d_zero, d_uncond, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(d_ramp[:, -1], d_uncond[:, -1] + 3 * (d_cond[:, -1] - d_uncond[:, -1]),
                               rtol=1e-3, atol=1e-3)


def test_default_guidance_is_constant_and_guides_frame_0(svd):
    """The authors sample with min = max guidance (3): frame 0 of a window is guided like the
    others (SVD's 1 → 3 ramp would leave it at the conditional prediction)."""
    T = 4
    g = torch.Generator().manual_seed(0)
    cond, clip = torch.randn(1, T, 4, 8, 16, generator=g), torch.randn(1, T, 32, generator=g)
    ids = torch.tensor([[4.0, 127.0, 0.02]])
    x, sigma = torch.randn(1, T, 4, 8, 16, generator=g), torch.tensor([2.0])
    default = guidance_ramp(T, *GenerateConfig().guidance)
    assert torch.equal(default, torch.full((T,), 3.0))
    with torch.no_grad():
        d = guided_denoiser(svd.unet, cond, clip, ids, default)(x, sigma)
        d_cond = guided_denoiser(svd.unet, cond, clip, ids, torch.ones(T))(x, sigma)
        d_uncond = guided_denoiser(svd.unet, torch.zeros_like(cond), torch.zeros_like(clip), ids, torch.ones(T))(x, sigma)
    torch.testing.assert_close(d[:, 0], d_uncond[:, 0] + 3 * (d_cond[:, 0] - d_uncond[:, 0]), rtol=1e-3, atol=1e-3)
    assert not torch.allclose(d[:, 0], d_cond[:, 0], atol=1e-3)
    # the command line: "3" is constant, "1,3" the ramp
    from model.generate import _parse_pair
    assert _parse_pair("3", "--guidance") == (3.0, 3.0) and _parse_pair("1,3", "--guidance") == (1.0, 3.0)


def test_condition_noise_only_inside_the_mask_and_not_on_context_frames(svd, tiny, make_texture):
    """Generation adds σ_cond·ε to the canvas inside the mask only; the S context frames taken
    from the previous window are clean."""
    from model.network import noisy_condition

    n = np.arange(11.0)
    pers = equirect_to_perspective(make_texture(128, 256), 90, 2 * n, 0 * n, 0 * n, out_hw=(24, 32))
    cfg = GenerateConfig(height=16, window=6, context=2, steps=1, guidance=(1.0, 1.0), sigma_cond=0.5)
    trace = []
    generate_panorama(svd, pers, Poses(90.0, 2 * n, 0 * n, 0 * n), cfg, scheduler_sigmas(tiny, 1), fps_id=5.0,
                      trace=trace)
    for t in trace:
        m = t["noise_mask"]  # (T, 1, H, W)
        canvas = t["condition"][None]
        noisy = noisy_condition(canvas, torch.tensor([0.5]), m[None], torch.Generator().manual_seed(0))[0]
        diff = (noisy - t["condition"]).abs().amax(1, keepdim=True)
        S = t["window"].context
        assert (diff[m == 0] == 0).all() and (diff[m > 0] > 0).all()
        outside = (m[S:] == 0).expand(-1, 3, -1, -1)
        assert (t["condition"][S:][outside] == -1).all()  # no noise where the canvas is black (outside the mask)
        assert 0 < m[S:].mean() < 1
        assert (m[:S] == 0).all()  # clean context frames


def test_latent_roll_is_undone():
    """For a denoiser that commutes with horizontal rolls, rolling between steps changes nothing."""
    c = torch.randn(1, 2, 4, 4, 16)

    def D(x, sigma, shift=0):
        return 0.5 * x + torch.roll(c, shift, dims=-1)
    noise, sigmas = torch.randn(1, 2, 4, 4, 16), edm.karras_sigmas(5)
    torch.testing.assert_close(sample_latents(D, noise, sigmas, roll=4), sample_latents(D, noise, sigmas, roll=0))


# -------------------------------------------------------------------------- the whole command
def test_command_generates_a_tagged_360_video(tiny, clip_mp4, tmp_path):
    """A train run dir (unet/, tiny_svd/, config.yaml) as the trainer leaves it: its config gives
    height 16, T = 6, S = 2 and the native frame rate; the poses are estimated."""
    run = tmp_path / "run"
    shutil.copytree(tiny / "unet", run / "unet")
    (run / "tiny_svd").symlink_to(tiny)
    (run / "config.yaml").write_text("model: {pretrained: null}\n"
                                     "data: {num_frames: 6, context_frames: 2, height: 16, fps: null}\n")
    out = tmp_path / "gen"
    rc = main(["--model", str(run), "--input", str(clip_mp4), "--output", str(out), "--fov", "90",
               "--steps", "2", "--guidance", "1,2"])
    assert rc == 0
    info = probe(out / "panorama.mp4")
    assert (info.width, info.height, info.num_frames) == (32, 16, 8)
    tags = read_spherical_v1((out / "panorama.mp4").read_bytes())
    assert tags == {"Spherical": "true", "Stitched": "true", "StitchingSoftware": "argus360",
                    "ProjectionType": "equirectangular"}
    poses = Poses.load(out / "poses.json")
    assert len(poses) == 8 and poses.source == "estimated" and poses.yaw[-1] == pytest.approx(21, abs=1.5)
    summary = json.loads((out / "generation.json").read_text())
    assert [(w["start"], w["stop"], w["context"]) for w in summary["windows"]] == [(0, 6, 0), (4, 10, 2)]
    assert summary["padded_frames"] == 2 and summary["model"]["unet"] == str(run / "unet")
    # the condition preview shows the input where the poses put it: the canvas centre is lit
    cond = decode_frames(out / "condition.mp4")
    mask = decode_frames(out / "mask.mp4")[..., 0] > 127
    assert cond.shape == (8, 16, 32, 3) and mask[:, 8, 16].all() and not mask[:, :, 0].any()
    assert cv2.imread(str(out / "preview.png")) is not None


@pytest.fixture
def bad_inputs(tiny, clip_mp4, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 10)
    Poses(90.0, [0.0] * 5, [0.0] * 5, [0.0] * 5).save(tmp_path / "short.json")
    empty_model = tmp_path / "empty_model"
    (empty_model / "unet").mkdir(parents=True)
    shutil.copy(tiny / "unet" / "config.json", empty_model / "unet" / "config.json")
    for part in ("vae", "image_encoder", "feature_extractor"):
        (empty_model / part).symlink_to(tiny / part)
    run_without_base = tmp_path / "run"
    shutil.copytree(tiny / "unet", run_without_base / "unet")
    return {"garbage": garbage, "short": tmp_path / "short.json", "empty_model": empty_model,
            "run": run_without_base}


@pytest.mark.parametrize("case, message", [
    ("unreadable", "cannot be read as a video"),
    ("poses_count", "5 frames of poses but the input gives 8"),
    ("fov_zero", r"\(0°, 180°\)"),
    ("fov_180", r"\(0°, 180°\)"),
    ("no_unet", "no trained UNet"),
    ("no_base", "pass --base"),
    ("no_fov", "field of view is needed"),
    ("bad_height", "multiple of"),
])
def test_bad_input_fails_fast_with_one_clear_error(tiny, clip_mp4, tmp_path, bad_inputs, capsys, case, message):
    out = tmp_path / "out"
    args = {"--model": str(tiny), "--input": str(clip_mp4), "--output": str(out), "--fov": "90",
            "--height": "16", "--fps": "native"}
    if case == "unreadable":
        args["--input"] = str(bad_inputs["garbage"])
    elif case == "poses_count":
        args["--poses"] = str(bad_inputs["short"])
    elif case == "fov_zero":
        args["--fov"] = "0"
    elif case == "fov_180":
        args["--fov"] = "180,60"
    elif case == "no_unet":
        args["--model"] = str(bad_inputs["empty_model"])
    elif case == "no_base":
        args["--model"] = str(bad_inputs["run"])
    elif case == "no_fov":
        del args["--fov"]
    elif case == "bad_height":
        args["--height"] = "18"
    argv = [v for kv in args.items() for v in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err
    assert not out.exists()  # nothing was done


def test_run_dir_with_base_resolves_to_its_unet(tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny / "unet", run / "unet")
    (run / "config.yaml").write_text("model: {pretrained: null}\ndata: {num_frames: 6, context_frames: 2, "
                                     "height: 16, fps: 5.0}\n")
    paths = resolve_model(run, base=tiny)
    assert paths.unet_dir == run / "unet" and paths.svd_dir == tiny
    assert paths.run_config["data"]["num_frames"] == 6


# spherical metadata: tests/shards/test_spherical.py
