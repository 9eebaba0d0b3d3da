"""The random test models as files: diffusers folders and single-file checkpoints in the original layout.

:func:`write_test_models` saves the models of :mod:`refsd.testing.sd15` the way users get
them: a diffusers pipeline folder (``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``), one diffusers ControlNet folder per
control, and the same weights as single-file ``.safetensors`` checkpoints in the original
(LDM / ``control_model.``) layout, so both loading paths of :mod:`refsd.refine.loading`
are exercised on real files. All weights are written with safetensors. :func:`unet_to_ldm`,
:func:`vae_to_ldm`, :func:`clip_to_ldm` and :func:`controlnet_to_ldm` do the key conversion
(the inverse of diffusers' own).

Imports of torch/diffusers/transformers happen inside the functions.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from .clip_tokenizer import write_clip_tokenizer
from .sd15 import FORMAT_VERSION, build_controlnet, build_sd15

__all__ = [
    "unet_to_ldm",
    "vae_to_ldm",
    "clip_to_ldm",
    "controlnet_to_ldm",
    "write_test_models",
]


# ---------------------------------------------------------------------------
# diffusers -> original (LDM) single-file layout: the inverse of diffusers' own conversion
# ---------------------------------------------------------------------------
_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_VAE_ATTN = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _resnet_key(rest: str) -> str:
    for new, old in _RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    return rest


def _unet_body_to_ldm(key: str, layers: int, attn_up: set[int], fixed: dict[str, str]) -> str | None:
    """An LDM key for a diffusers UNet/ControlNet key shared by both (``None``: not handled)."""
    if key in fixed:
        return fixed[key]
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = b * (layers + 1) + j + 1
        return f"input_blocks.{idx}.0.{_resnet_key(rest)}" if kind == "resnets" else f"input_blocks.{idx}.1.{rest}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)
    if m:
        return f"input_blocks.{(int(m[1]) + 1) * (layers + 1)}.0.op.{m[2]}"
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key)
    if m:
        return f"middle_block.{2 * int(m[1])}.{_resnet_key(m[2])}"
    m = re.match(r"mid_block\.attentions\.0\.(.*)", key)
    if m:
        return f"middle_block.1.{m[1]}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = b * (layers + 1) + j
        return f"output_blocks.{idx}.0.{_resnet_key(rest)}" if kind == "resnets" else f"output_blocks.{idx}.1.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)
    if m:
        b = int(m[1])
        return f"output_blocks.{b * (layers + 1) + layers}.{2 if b in attn_up else 1}.conv.{m[2]}"
    return None


def unet_to_ldm(unet, prefix: str = "model.diffusion_model.") -> dict:
    """The UNet's weights under the original SD1.x key names (``model.diffusion_model.*``)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    cfg = unet.config
    attn_up = {i for i, t in enumerate(cfg.up_block_types) if "CrossAttn" in t}
    fixed = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    out = {}
    for k, v in unet.state_dict().items():
        new = _unet_body_to_ldm(k, cfg.layers_per_block, attn_up, fixed)
        if new is None:
            raise KeyError(f"no LDM name for UNet weight {k}")
        out[prefix + new] = v
    return out


def controlnet_to_ldm(controlnet, prefix: str = "control_model.") -> dict:
    """The ControlNet's weights in the original ``control_model.*`` layout (input hint block,
    zero convolutions, ``middle_block_out``)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    cfg = controlnet.config
    if len(cfg.conditioning_embedding_out_channels) != 4:
        raise ValueError("the original ControlNet layout has 4 conditioning-embedding levels")
    fixed = DIFFUSERS_TO_LDM_MAPPING["controlnet"]["layers"]
    out = {}
    for k, v in controlnet.state_dict().items():
        m = re.match(r"controlnet_down_blocks\.(\d+)\.(.*)", k)
        n = re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.*)", k)
        if m:
            new = f"zero_convs.{m[1]}.0.{m[2]}"
        elif n:
            new = f"input_hint_block.{2 * (int(n[1]) + 1)}.{n[2]}"
        elif k.startswith("controlnet_mid_block."):
            new = "middle_block_out.0." + k[len("controlnet_mid_block."):]
        else:
            new = _unet_body_to_ldm(k, cfg.layers_per_block, set(), fixed)
        if new is None:
            raise KeyError(f"no LDM name for ControlNet weight {k}")
        out[prefix + new] = v
    return out


def vae_to_ldm(vae, prefix: str = "first_stage_model.") -> dict:
    """The VAE's weights under the original key names (attention projections as 1x1 convolutions)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    n_up = len(vae.config.up_block_types)
    out = {}
    for k, v in vae.state_dict().items():
        new = fixed.get(k)
        if new is None:
            m = re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(resnets|downsamplers|upsamplers)\.(\d+)\.(.*)", k)
            a = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", k)
            r = re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", k)
            if m:
                part, kind, b, sub, j, rest = m[1], m[2], int(m[3]), m[4], m[5], m[6]
                if kind == "up":
                    b = n_up - 1 - b
                if sub == "resnets":
                    new = f"{part}.{kind}.{b}.block.{j}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
                else:
                    new = f"{part}.{kind}.{b}.{'downsample' if kind == 'down' else 'upsample'}.{rest}"
            elif r:
                new = f"{r[1]}.mid.block_{int(r[2]) + 1}.{r[3].replace('conv_shortcut', 'nin_shortcut')}"
            elif a:
                rest = a[2]
                for d, o in _VAE_ATTN:
                    if rest.startswith(d + "."):
                        rest = o + rest[len(d):]
                        break
                new = f"{a[1]}.mid.attn_1.{rest}"
                if v.ndim == 2:
                    v = v[:, :, None, None]  # linear -> 1x1 conv, as in the original VAE
            else:
                raise KeyError(f"no LDM name for VAE weight {k}")
        out[prefix + new] = v
    return out


def clip_to_ldm(text_encoder, prefix: str = "cond_stage_model.transformer.") -> dict:
    """The CLIP text model's weights as SD1.x checkpoints store them."""
    sd = text_encoder.state_dict()
    inner = "" if any(k.startswith("text_model.") for k in sd) else "text_model."
    return {prefix + inner + k: v for k, v in sd.items() if not k.endswith("position_ids")}


# ---------------------------------------------------------------------------
# Writing the files
# ---------------------------------------------------------------------------
def write_test_models(
    folder: str | Path, size: str = "tiny", seed: int = 0, controls: Iterable[str] = ("depth", "openpose", "canny"),
    single_file: bool = True,
) -> dict:
    """Write random test models into ``folder`` (reused when already there, same version/seed):

    * ``sd15/``: a diffusers Stable Diffusion folder (safetensors weights);
    * ``controlnet-<name>/``: a diffusers ControlNet folder per control;
    * with ``single_file``: ``sd15.safetensors`` (original LDM layout), ``sd15-config/`` (the
      same folder without weights: the local config ``from_single_file`` needs),
      ``controlnet-<name>.safetensors`` (``control_model.*`` layout) and
      ``controlnet-<name>-config/config.json``.

    Returns the paths (``model``, ``controlnets``, ``checkpoint``, ``config``,
    ``controlnet_files``, ``controlnet_configs``) as a dict; ``models.json`` in the folder
    records them.
    """
    folder = Path(folder)
    controls = list(controls)
    info_file = folder / "models.json"
    want = {"format": FORMAT_VERSION, "size": size, "seed": seed, "controls": controls, "single_file": single_file}
    if info_file.is_file():
        try:
            info = json.loads(info_file.read_text())
        except json.JSONDecodeError:
            info = {}
        if info.get("spec") == want and all(Path(folder / p).exists() for p in info.get("files", [])):
            return _paths(folder, info)
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file
    from transformers import CLIPTokenizer

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tok_dir = folder / "_tokenizer"
    vocab = write_clip_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
    parts = build_sd15(size, seed=seed, vocab_size=vocab if size == "tiny" else None)
    pipe = StableDiffusionPipeline(**parts, tokenizer=tokenizer, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder / "sd15", safe_serialization=True)
    shutil.rmtree(tok_dir)
    # the hand-written vocabulary files, as SD1.5 ships them (save_pretrained may write only tokenizer.json)
    write_clip_tokenizer(folder / "sd15" / "tokenizer")
    files = ["sd15/model_index.json"]
    controlnets = {}
    for i, name in enumerate(controls):
        cn = build_controlnet(parts["unet"], size, seed=seed + 100 + i)
        cn.save_pretrained(folder / f"controlnet-{name}", safe_serialization=True)
        controlnets[name] = cn
        files.append(f"controlnet-{name}/config.json")
    if single_file:
        ckpt = {}
        ckpt.update(unet_to_ldm(parts["unet"]))
        ckpt.update(vae_to_ldm(parts["vae"]))
        ckpt.update(clip_to_ldm(parts["text_encoder"]))
        save_file({k: v.detach().contiguous().to(torch.float32) for k, v in ckpt.items()}, folder / "sd15.safetensors")
        cfg_dir = folder / "sd15-config"
        shutil.copytree(folder / "sd15", cfg_dir, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
        files += ["sd15.safetensors", "sd15-config/model_index.json"]
        for name, cn in controlnets.items():
            sd = {k: v.detach().contiguous().to(torch.float32) for k, v in controlnet_to_ldm(cn).items()}
            save_file(sd, folder / f"controlnet-{name}.safetensors")
            (folder / f"controlnet-{name}-config").mkdir()
            shutil.copy(folder / f"controlnet-{name}" / "config.json", folder / f"controlnet-{name}-config")
            files += [f"controlnet-{name}.safetensors", f"controlnet-{name}-config/config.json"]
    info = {"spec": want, "files": files}
    info_file.write_text(json.dumps(info, indent=1))
    return _paths(folder, info)


def _paths(folder: Path, info: dict) -> dict:
    spec = info["spec"]
    out = {
        "model": folder / "sd15",
        "controlnets": {n: folder / f"controlnet-{n}" for n in spec["controls"]},
    }
    if spec["single_file"]:
        out["checkpoint"] = folder / "sd15.safetensors"
        out["config"] = folder / "sd15-config"
        out["controlnet_files"] = {n: folder / f"controlnet-{n}.safetensors" for n in spec["controls"]}
        out["controlnet_configs"] = {n: folder / f"controlnet-{n}-config" for n in spec["controls"]}
    return out
