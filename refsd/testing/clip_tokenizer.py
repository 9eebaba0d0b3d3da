"""A CLIP tokenizer from a small vocabulary, for the random test models of :mod:`refsd.testing.sd15`.

:func:`write_clip_tokenizer` writes the 256 byte symbols, their end-of-word forms, and
byte-pair merges that make each word RefSD's attribute prompts use a single token (other
words fall back to characters). Nothing is downloaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["write_clip_tokenizer"]


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
    from ..people import AttributeDistribution, build_prompt

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
