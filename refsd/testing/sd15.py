"""Random-weight Stable Diffusion 1.5 + ControlNet models in diffusers' formats, for tests and benchmarks.

Nothing here is downloaded: every model is built from a config written in this file, with
deterministic random weights (the CLIP tokenizer is written by
:mod:`refsd.testing.clip_tokenizer`, the model folders and single-file checkpoints by
:mod:`refsd.testing.checkpoints`). Two sizes:

* ``"tiny"``: a two-level UNet with 32/64 channels, a 4-level VAE with 8/16 channels
  (the real 8x latent scale), a 2-layer CLIP text model of width 32 and ControlNets
  matching the UNet. A 64x128 crop refines in well under a second on a CPU.
* ``"full"``: every tensor of the real SD1.5 (UNet 320..1280 channels, CLIP ViT-L/14 text
  model, the SD VAE) and of the SD1.5 ControlNets; for GPU benchmarks.

Imports of torch/diffusers/transformers happen inside the functions.
"""

from __future__ import annotations

__all__ = [
    "FORMAT_VERSION",
    "sd15_configs",
    "build_sd15",
    "build_controlnet",
]

FORMAT_VERSION = 2  # bump when the written layout or the configs change

SCHEDULER_CONFIG = {  # Stable Diffusion 1.5's PNDM scheduler settings
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def sd15_configs(size: str = "tiny") -> dict[str, dict]:
    """Configs of the UNet, VAE, CLIP text model and ControlNet conditioning embedding."""
    if size == "tiny":
        unet = dict(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            # attention only at the coarser level (as cheap as possible at 512x768 on a CPU)
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
        )
        vae = dict(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
            block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, sample_size=128,
        )
        clip = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=32)
        cond = (8, 8, 16, 16)
    elif size == "full":
        unet = dict(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
        )
        vae = dict(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512,
        )
        clip = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
        cond = (16, 32, 96, 256)
    else:
        raise ValueError(f"unknown model size {size!r}; use 'tiny' or 'full'")
    return {"unet": unet, "vae": vae, "clip": clip, "controlnet_cond": cond}


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
def _randomize_zeros(module, seed: int) -> None:
    """Give zero-initialised weights (ControlNet zero convolutions, output convs) small random
    values so every path has an effect in tests; deterministic."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in sorted(module.named_parameters()):
            if p.ndim > 1 and not bool(p.detach().any()):
                p.copy_((torch.randn(p.shape, generator=g) * 0.02).to(p.dtype))


def build_sd15(size: str = "tiny", seed: int = 0, vocab_size: int | None = None, device="cpu", dtype=None) -> dict:
    """Random ``unet``, ``vae``, ``text_encoder`` and ``scheduler`` (deterministic for a seed on
    the CPU). ``vocab_size`` defaults to 49408 for "full" (CLIP's) and must be given for "tiny"
    (the tokenizer's, see :func:`refsd.testing.clip_tokenizer.write_clip_tokenizer`)."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = sd15_configs(size)
    if vocab_size is None:
        if size != "full":
            raise ValueError("vocab_size is needed for tiny models (the tokenizer's vocabulary size)")
        vocab_size = 49408
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(device):
            unet = UNet2DConditionModel(**cfg["unet"])
            vae = AutoencoderKL(**cfg["vae"])
            n = vocab_size
            text_cfg = CLIPTextConfig(vocab_size=n, bos_token_id=n - 2, eos_token_id=n - 1, pad_token_id=n - 1,
                                      **cfg["clip"])
            text_encoder = CLIPTextModel(text_cfg)
    _randomize_zeros(unet, seed + 1)
    out = {"unet": unet, "vae": vae, "text_encoder": text_encoder,
           "scheduler": PNDMScheduler.from_config(SCHEDULER_CONFIG)}
    for k in ("unet", "vae", "text_encoder"):
        out[k].train(False)  # inference mode (nn.Module.eval)
        if dtype is not None:
            out[k].to(dtype=dtype)
    return out


def build_controlnet(unet, size: str = "tiny", seed: int = 0):
    """A random ControlNet matching ``unet`` (its zero convolutions randomised too)."""
    import torch
    from diffusers import ControlNetModel

    cond = sd15_configs(size)["controlnet_cond"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(unet.device):
            cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=cond, load_weights_from_unet=False)
    _randomize_zeros(cn, seed + 1)
    cn.train(False)  # inference mode (nn.Module.eval)
    return cn if cn.dtype == unet.dtype else cn.to(dtype=unet.dtype)
