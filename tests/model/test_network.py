"""The conditioned SVD network: diffusers layout round trip, layout errors, conditioning helpers."""

import json
import shutil

import pytest
import torch

from model import edm
from model.frames import signed_unit
from model.network import (added_time_ids, build_tiny_svd, check_svd_dir, clip_embeddings, drop_conditions,
                           encode_condition, encode_target, load_svd, sample_sigma_cond, unet_fn, vae_decode,
                           vae_encode)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_svd(tmp_path_factory.mktemp("svd") / "tiny", num_frames=4)


@pytest.fixture(scope="module")
def svd(tiny_dir):
    return load_svd(tiny_dir)


def test_tiny_layout_and_round_trip(tiny_dir, svd):
    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNetSpatioTemporalConditionModel"]
    assert svd.unet.config.in_channels == 8 and svd.unet.config.out_channels == 4
    assert svd.unet.config.cross_attention_dim == svd.image_encoder.config.projection_dim
    assert svd.unet.config.projection_class_embeddings_input_dim == 3 * svd.unet.config.addition_time_embed_dim
    assert (tiny_dir / "scheduler" / "scheduler_config.json").is_file()
    # loading twice gives the same weights (from_pretrained, not re-initialised)
    again = load_svd(tiny_dir)
    for (n, a), (_, b) in zip(svd.unet.named_parameters(), again.unet.named_parameters()):
        assert torch.equal(a, b), n
    assert not any(p.requires_grad for p in svd.vae.parameters())


def test_not_svd_layout_errors(tmp_path, tiny_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_svd_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a Stable Video Diffusion directory.*unet/config.json"):
        load_svd(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(tiny_dir, bad)
    cfg = json.loads((bad / "unet" / "config.json").read_text())
    cfg["in_channels"] = 4
    (bad / "unet" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="in_channels=4"):
        check_svd_dir(bad)


def test_conditioning_shapes_and_values(svd):
    g = torch.Generator().manual_seed(0)
    B, T = 2, 4
    frames = torch.rand(B, T, 3, 16, 32, generator=g) * 2 - 1
    x0 = encode_target(svd.vae, frames)
    plain = vae_encode(svd.vae, frames)
    assert x0.shape == (B, T, 4, 8, 16)
    torch.testing.assert_close(x0, plain * svd.vae.config.scaling_factor)
    # σ_cond = 0 is the plain encoding; σ_cond > 0 changes it (noise augmentation before the VAE)
    torch.testing.assert_close(encode_condition(svd.vae, frames, torch.zeros(B), g), plain)
    noisy = encode_condition(svd.vae, frames, torch.tensor([0.0, 0.5]), g)
    torch.testing.assert_close(noisy[0], plain[0])
    assert not torch.allclose(noisy[1], plain[1])
    emb = clip_embeddings(svd.image_encoder, svd.feature_extractor, torch.rand(B, T, 3, 20, 20, generator=g))
    assert emb.shape == (B, T, svd.image_encoder.config.projection_dim)
    assert not torch.allclose(emb[:, 0], emb[:, 1])  # one embedding per frame
    ids = added_time_ids(torch.tensor([0.1, 0.2]), fps=5.0)
    torch.testing.assert_close(ids, torch.tensor([[4.0, 127.0, 0.1], [4.0, 127.0, 0.2]]))
    assert vae_decode(svd.vae, x0).shape == frames.shape


def test_uint8_pixels_are_refused_where_signed_floats_are_meant(svd):
    # training pairs hold uint8 pixels; fed as they are, the VAE and CLIP would read values up to 255
    pixels = torch.randint(0, 256, (1, 2, 3, 16, 32), dtype=torch.uint8)
    with pytest.raises(TypeError, match="vae_encode: expected float pixels in \\[−1, 1\\], got torch.uint8"):
        vae_encode(svd.vae, pixels)
    with pytest.raises(TypeError, match="noisy_condition: .*signed_unit"):
        encode_condition(svd.vae, pixels, torch.zeros(1))
    with pytest.raises(TypeError, match="clip_embeddings: .*torch.uint8"):
        clip_embeddings(svd.image_encoder, svd.feature_extractor, pixels)
    vae_encode(svd.vae, signed_unit(pixels))  # the conversion the message names


def test_sigma_cond_lognormal():
    s = sample_sigma_cond(20000, -3.0, 0.5, torch.Generator().manual_seed(0))
    assert float(s.log().mean()) == pytest.approx(-3.0, abs=0.02)
    assert float(s.log().std()) == pytest.approx(0.5, abs=0.02)


def test_condition_dropout_drops_both_together():
    g = torch.Generator().manual_seed(3)
    clip, cond = torch.ones(400, 2, 3), torch.ones(400, 2, 4, 2, 2)
    c2, l2, keep = drop_conditions(clip, cond, 0.2, g)
    dropped = ~keep
    assert 0.13 < dropped.float().mean() < 0.27
    assert bool((c2[dropped] == 0).all() and (l2[dropped] == 0).all())
    assert bool((c2[keep] == 1).all() and (l2[keep] == 1).all())
    assert bool(drop_conditions(clip, cond, 0.0, g)[2].all())
    assert not bool(drop_conditions(clip, cond, 1.0, g)[2].any())


def test_unet_fn_concatenates_condition(svd):
    g = torch.Generator().manual_seed(1)
    B, T = 1, 4
    y = torch.randn(B, T, 4, 8, 16, generator=g)
    cond = torch.randn(B, T, 4, 8, 16, generator=g)
    clip = torch.randn(B, T, svd.unet.config.cross_attention_dim, generator=g)
    ids = added_time_ids(torch.tensor([0.05]), 5.0)
    with torch.no_grad():
        F = unet_fn(svd.unet, cond, clip, ids)
        out = F(y, torch.tensor([0.1]))
        direct = svd.unet(torch.cat([y, cond], 2), torch.tensor([0.1]), encoder_hidden_states=clip,
                          added_time_ids=ids).sample
        assert out.shape == y.shape
        torch.testing.assert_close(out, direct)
        # the condition matters: changing it changes the prediction
        assert not torch.allclose(out, unet_fn(svd.unet, cond * 0, clip, ids)(y, torch.tensor([0.1])))
        d = edm.denoise(F, y, torch.tensor([2.0]))
        assert torch.isfinite(d).all()


# ------------------------------------------------------------------ SVD-XT as published: variants
def test_fp16_variant_loads_with_variant_auto(tmp_path, tiny_dir):
    """SVD-XT is published as *.fp16.safetensors only: `variant: auto` finds them."""
    fp16 = build_tiny_svd(tmp_path / "fp16", num_frames=4, variant="fp16")
    assert sorted(p.name for p in (fp16 / "unet").iterdir()) == [
        "config.json", "diffusion_pytorch_model.fp16.safetensors"]
    assert (fp16 / "image_encoder" / "model.fp16.safetensors").is_file()
    loaded = load_svd(fp16, variant="auto", dtype=torch.float32)
    reference = load_svd(tiny_dir)  # same seed, same architecture, saved in fp32
    for (n, a), (_, b) in zip(loaded.unet.named_parameters(), reference.unet.named_parameters()):
        assert a.dtype == torch.float32
        assert torch.equal(a, b.half().float()), n  # the fp16 file's values, upcast
    assert load_svd(fp16, variant="fp16").vae is not None
    with pytest.raises(ValueError, match=r"weight files missing: unet/diffusion_pytorch_model.safetensors"):
        load_svd(fp16, variant="none")


def test_configs_without_weights_fail_in_one_line_naming_the_files(tmp_path, tiny_dir):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_dir, bare, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ValueError) as e:
        load_svd(bare)
    msg = str(e.value)
    assert "\n" not in msg
    for name in ("unet/diffusion_pytorch_model.safetensors or unet/diffusion_pytorch_model.fp16.safetensors",
                 "vae/diffusion_pytorch_model.safetensors", "image_encoder/model.safetensors"):
        assert name in msg, msg
    # a fine-tuned UNet swapped in: the base directory's own UNet weights are not needed
    shutil.copytree(tiny_dir / "unet", tmp_path / "finetuned")
    (bare / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(
        (tiny_dir / "vae" / "diffusion_pytorch_model.safetensors").read_bytes())
    (bare / "image_encoder" / "model.safetensors").write_bytes(
        (tiny_dir / "image_encoder" / "model.safetensors").read_bytes())
    assert load_svd(bare, unet_path=tmp_path / "finetuned").unet.config.in_channels == 8
    # a truncated weight file is one clear error naming the directory, not a traceback from deep inside
    (bare / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match=r"bare/vae: cannot load AutoencoderKLTemporalDecoder"):
        load_svd(bare, unet_path=tmp_path / "finetuned")
