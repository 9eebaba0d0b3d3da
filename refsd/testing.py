"""Random-weight Stable Diffusion 1.5 + ControlNet models in diffusers' formats, for tests and benchmarks.

Nothing here is downloaded: every model is built from a config written in this file, with
deterministic random weights, and the CLIP tokenizer from a small vocabulary written by
:func:`write_clip_tokenizer` (the 256 byte symbols, their end-of-word forms, and merges that
make each word RefSD's attribute prompts use a single token). Two sizes:

* ``"tiny"``: a two-level UNet with 32/64 channels, a 4-level VAE with 8/16 channels
  (the real 8x latent scale), a 2-layer CLIP text model of width 32 and ControlNets
  matching the UNet. A 64x128 crop refines in well under a second on a CPU.
* ``"full"``: every tensor of the real SD1.5 (UNet 320..1280 channels, CLIP ViT-L/14 text
  model, the SD VAE) and of the SD1.5 ControlNets; for GPU benchmarks.

:func:`write_test_models` saves them the way users get them: a diffusers pipeline folder
(``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``), one diffusers ControlNet folder per control, and the same weights as
single-file ``.safetensors`` checkpoints in the original (LDM / ``control_model.``) layout,
so both loading paths of :mod:`refsd.diffusion` are exercised on real files. All weights
are written with safetensors.

Imports of torch/diffusers/transformers happen inside the functions.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "FORMAT_VERSION",
    "sd15_configs",
    "write_clip_tokenizer",
    "build_sd15",
    "build_controlnet",
    "unet_to_ldm",
    "vae_to_ldm",
    "clip_to_ldm",
    "controlnet_to_ldm",
    "write_test_models",
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
# Tokenizer from a small vocabulary
# ---------------------------------------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-level BPE alphabet (the same table as OpenAI's CLIP tokenizer)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _prompt_words() -> list[str]:
    """The words of RefSD's attribute prompts (deterministic): sampled people's prompts and the tags."""
    from .attributes import AttributeDistribution, build_prompt

    text = []
    for a in AttributeDistribution().sample(0, 64):
        text += build_prompt(a)
    words = re.findall(r"[a-z]+", " ".join(text).lower())
    return sorted(set(words))


def _train_bpe(words: Iterable[str]) -> list[str]:
    """Byte-pair merges learnt on ``words`` until every word is one token (most frequent pair
    first, ties by name: deterministic), so that BPE applied in rank order gives each word
    back as a single token."""
    seqs = [tuple(w[:-1]) + (w[-1] + "</w>",) for w in sorted(set(words)) if len(w) >= 2 and w.isascii()]
    merges: list[str] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for s in seqs:
            for a, b in zip(s, s[1:], strict=False):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            return merges
        pair = min(counts, key=lambda k: (-counts[k], k))
        merges.append(f"{pair[0]} {pair[1]}")
        new_seqs = []
        for s in seqs:
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == pair:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            new_seqs.append(tuple(out))
        seqs = [s for s in new_seqs if len(s) > 1]


def write_clip_tokenizer(folder: str | Path, words: Iterable[str] | None = None) -> int:
    """Write a CLIP tokenizer (``vocab.json``, ``merges.txt``, ``tokenizer_config.json``) whose
    vocabulary is the byte alphabet, its end-of-word forms and one token per word of ``words``
    (default: the words of RefSD's prompts); other words fall back to characters. Returns the
    vocabulary size."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = _train_bpe(words if words is not None else _prompt_words())
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }, indent=1))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }, indent=1))
    return len(vocab)


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
    (the tokenizer's, see :func:`write_clip_tokenizer`)."""
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
