"""Write random-weight models in ComfyUI's formats, for tests and the offline demo.

* ``refsd_test_sd15.safetensors``: an SD1.5-shaped checkpoint that ComfyUI's model
  detection recognises as SD1.5 (UNet with 320 channels and context 768, but only one
  level, one res-block and one transformer block, so it samples in seconds on a CPU),
  a full CLIP-L text encoder and a full SD VAE, stored in fp16 (~465 MB).
* ``refsd_test_controlnet.safetensors``: a ControlNet matching that UNet, in the LDM
  (``control_model.``) layout.

The weights are random: pixel content is meaningless, but every tensor shape, key and
code path is the real one. The files go to a git-ignored cache and are never committed.

Run with ComfyUI importable: ``python scripts/make_random_models.py OUT_DIR``
(``COMFYUI_PATH`` names the ComfyUI tree; it is put on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

CHECKPOINT = "refsd_test_sd15.safetensors"
CONTROLNET = "refsd_test_controlnet.safetensors"
FORMAT_VERSION = 1  # bump when the generated layout changes

UNET_CONFIG = dict(
    image_size=32,
    in_channels=4,
    out_channels=4,
    model_channels=320,
    num_res_blocks=[1],
    channel_mult=[1],
    transformer_depth=[1],
    transformer_depth_output=[1, 1],
    transformer_depth_middle=1,
    context_dim=768,
    num_heads=8,
    num_head_channels=-1,
    use_linear_in_transformer=False,
    use_spatial_transformer=True,
    legacy=False,
)

VAE_DDCONFIG = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
}


def _init_(module, seed: int) -> None:
    """Deterministic small random init (ComfyUI's ops skip torch's own init)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 0:
                continue  # scalars such as CLIP's logit_scale keep their value
            if p.ndim == 1 and ("norm" in name or name.endswith(".weight") and "ln" in name):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif p.ndim == 1:
                p.zero_()
            else:
                fan_in = max(1, p[0].numel())
                p.copy_(torch.randn(p.shape, generator=g) * min(0.02, fan_in ** -0.5))


def build(out_dir: Path) -> dict:
    import torch

    comfy_root = os.environ.get("COMFYUI_PATH")
    if comfy_root:
        sys.path.insert(0, comfy_root)
    sys.argv = sys.argv[:1] + ["--cpu"]  # never touch a GPU here
    import comfy.options

    comfy.options.enable_args_parsing()  # so comfy.cli_args reads --cpu
    import comfy.ldm.models.autoencoder as autoencoder
    import comfy.ops
    import comfy.sd1_clip
    from comfy.cldm.cldm import ControlNet
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from safetensors.torch import save_file

    ops = comfy.ops.disable_weight_init
    t0 = time.time()
    sd = {}

    unet = UNetModel(**UNET_CONFIG, dtype=torch.float32, device="cpu", operations=ops)
    _init_(unet, 1)
    sd.update({f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()})

    vae = autoencoder.AutoencoderKL(ddconfig=VAE_DDCONFIG, embed_dim=4)
    _init_(vae, 2)
    sd.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})

    clip = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32)
    _init_(clip, 3)
    for k, v in clip.state_dict().items():
        sd[f"cond_stage_model.{k}"] = v

    sd = {k: v.to(torch.float16).contiguous() for k, v in sd.items() if v.is_floating_point()} | {
        k: v.contiguous() for k, v in sd.items() if not v.is_floating_point()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(out_dir / (CHECKPOINT + ".tmp")), metadata={"refsd": "random test weights"})
    os.replace(out_dir / (CHECKPOINT + ".tmp"), out_dir / CHECKPOINT)

    cfg = {k: v for k, v in UNET_CONFIG.items() if k not in ("out_channels", "transformer_depth_output")}
    cnet = ControlNet(hint_channels=3, **cfg, dtype=torch.float32, device="cpu", operations=ops)
    _init_(cnet, 4)
    csd = {f"control_model.{k}": v.to(torch.float16).contiguous() for k, v in cnet.state_dict().items()}
    save_file(csd, str(out_dir / (CONTROLNET + ".tmp")), metadata={"refsd": "random test weights"})
    os.replace(out_dir / (CONTROLNET + ".tmp"), out_dir / CONTROLNET)

    info = {
        "format_version": FORMAT_VERSION,
        "checkpoint": CHECKPOINT,
        "controlnet": CONTROLNET,
        "checkpoint_mb": round((out_dir / CHECKPOINT).stat().st_size / 2**20, 1),
        "controlnet_mb": round((out_dir / CONTROLNET).stat().st_size / 2**20, 1),
        "seconds": round(time.time() - t0, 1),
    }
    (out_dir / "models.json").write_text(json.dumps(info, indent=2))
    return info


def up_to_date(out_dir: Path) -> bool:
    try:
        info = json.loads((out_dir / "models.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("format_version") == FORMAT_VERSION and (out_dir / CHECKPOINT).is_file() and (
        out_dir / CONTROLNET
    ).is_file()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    args = ap.parse_args()
    if up_to_date(args.out_dir) and not args.force:
        print(f"random models already in {args.out_dir}")
        return
    info = build(args.out_dir)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
