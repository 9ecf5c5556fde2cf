"""Torch-free CLIP text tower, so a cold `clipsearch query` never pays for importing torch.

`export_text_encoder` runs once where torch is loaded anyway (the factory's export step) and
writes the text tower of a standard open_clip model to a directory: raw float32 weights in one
mmap-able file with an offset table, the BPE merges and a small JSON config.
`FastTextEncoder` replays open_clip's tokenizer and text transformer in numpy from that
directory.  Only models whose text side we reproduce exactly are exported; everything else
returns False so the caller keeps torch.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import regex
from threadpoolctl import ThreadpoolController

from .base import normalised
from .blocks import Blocks, layer_norm
from .exportfile import Export, load_export, write_export
from .fromtorch import block_tensors, is_layer_norm, to_numpy

FORMAT = "clipsearch-textfast"
VERSION = 1
MERGES_NAME = "bpe_merges.txt"

SOT, EOT = "<start_of_text>", "<end_of_text>"
# open_clip's SimpleTokenizer pre-tokenisation (special tokens first), used with IGNORECASE.
_PATTERN = f"{SOT}|{EOT}" + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_BASE_VOCAB = 2 * 256 + 2  # byte tokens, byte tokens ending a word, start and end
_BATCH = 64  # texts per forward pass; bounds the (n, heads, L, L) attention scores
_CACHE_SIZE = 256  # recent text vectors kept per encoder
_WORD_CACHE_SIZE = 8192  # recent BPE words kept per tokenizer


# --------------------------------------------------------------------------- tokenizer


def _byte_alphabet() -> list[str]:
    """Map each byte to a visible unicode character, as CLIP's byte-level BPE vocabulary does."""
    kept = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)}
    kept.update(range(ord("®"), ord("ÿ") + 1))
    shifted = iter(range(256, 512))  # the other bytes, in order, past the latin-1 range
    return [chr(b) if b in kept else chr(next(shifted)) for b in range(256)]


def _vocabulary(merges: list[str]) -> dict[str, int]:
    """Token -> id in CLIP's order: bytes, bytes ending a word, merges, then the two specials.

    `merges` are 'left right' strings in rank order; a repeated token keeps its last id.
    """
    alphabet = sorted(_byte_alphabet())  # visible bytes first, then the shifted ones
    merged = [m.replace(" ", "") for m in merges]
    vocab = [*alphabet, *(c + "</w>" for c in alphabet), *merged, SOT, EOT]
    return dict(zip(vocab, range(len(vocab)), strict=True))


def _is_plain(text: str) -> bool:
    """True when ftfy and HTML unescaping provably leave `text` unchanged (printable ASCII, no &).

    Skipping them saves importing ftfy (~55 ms) for the usual English query.
    """
    return text.isascii() and text.isprintable() and "&" not in text


def clean_text(text: str) -> str:
    """open_clip's 'lower' cleaning: ftfy, HTML unescape twice, collapse whitespace, lower-case."""
    if not _is_plain(text):
        import html

        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


class ClipTokenizer:
    """Reproduces open_clip's default `SimpleTokenizer` ids without importing torch."""

    def __init__(self, merges: list[str], context_length: int) -> None:
        self.encoder = _vocabulary(merges)
        self.context_length = context_length
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        self._ranks = dict(zip(merges, range(len(merges)), strict=True))  # 'left right' -> rank
        self._bytes = dict(enumerate(_byte_alphabet()))  # for str.translate of latin-1 text
        self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        # A per-instance memo: functools.lru_cache on the method would pin every instance.
        self._word_ids = functools.lru_cache(maxsize=_WORD_CACHE_SIZE)(self._bpe_ids)

    def encode(self, text: str) -> list[int]:
        """BPE ids of `text` without start/end tokens."""
        ids: list[int] = []
        for piece in self._pattern.findall(clean_text(text)):
            ids.extend(
                self._word_ids(piece.encode("utf-8").decode("latin-1").translate(self._bytes))
            )
        return ids

    def __call__(self, texts: list[str]) -> np.ndarray:
        """(n, context_length) int64 ids, zero padded and truncated exactly like open_clip."""
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id][: self.context_length]
            ids[-1] = self.eot_id
            out[row, : len(ids)] = ids
        return out

    def _bpe_ids(self, word: str) -> tuple[int, ...]:
        """Merge the lowest-ranked adjacent pair until none is known, then look the parts up."""
        if word in (SOT, EOT):
            return (self.encoder[word],)
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = [f"{a} {b}" for a, b in pairwise(parts)]
            best = min(pairs, key=lambda p: self._ranks.get(p, math.inf))
            if best not in self._ranks:
                break
            parts = _merge_pair(parts, best)
        return tuple(self.encoder[p] for p in parts)


def _merge_pair(parts: list[str], merge: str) -> list[str]:
    """Replace every non-overlapping occurrence of the 'left right' pair, left to right."""
    pair = tuple(merge.split(" "))
    merged: list[str] = []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            merged.append(parts[i] + parts[i + 1])
            i += 2
        else:
            merged.append(parts[i])
            i += 1
    return merged


# --------------------------------------------------------------------------- encoder


class FastTextEncoder:
    """open_clip text tower replayed in float32 numpy from an export directory."""

    def __init__(
        self, config: dict[str, Any], weights: dict[str, np.ndarray], tokenizer: ClipTokenizer
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.dim = int(weights["text_projection"].shape[1])
        self._w = weights
        self._blocks = Blocks.from_export(config, weights)
        self._eps = float(config["ln_eps"])
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @classmethod
    def load(cls, directory: Path | str) -> FastTextEncoder | None:
        """Open an export, or None if it is absent, incomplete or of another format."""
        export = load_export(directory, FORMAT, VERSION, (MERGES_NAME,))
        if export is None:
            return None
        try:
            return cls._from_export(export)
        except (ValueError, KeyError, TypeError):
            return None

    @classmethod
    def _from_export(cls, export: Export) -> FastTextEncoder | None:
        config = export.config
        if config["pooling"] != "argmax":
            return None
        merges = export.texts[MERGES_NAME].splitlines()
        tokenizer = ClipTokenizer(merges, int(config["context_length"]))
        return cls(config, export.weights, tokenizer)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 L2-normalised text vectors; recent texts come from a cache."""
        found = {t: self._cache[t] for t in texts if t in self._cache}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            found.update(self._encode_uncached(missing))
        for text, vector in found.items():
            self._remember(text, vector)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[t] for t in texts])

    def _encode_uncached(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Vectors by text.  These GEMMs have a handful of rows and are memory-bound, so extra
        BLAS threads only spin; on a busy 2-core machine they turned 40 ms into seconds."""
        vectors: dict[str, np.ndarray] = {}
        with _blas().limit(limits=1, user_api="blas"):
            for start in range(0, len(texts), _BATCH):
                chunk = texts[start : start + _BATCH]
                vectors.update(zip(chunk, self._forward(self.tokenizer(chunk)), strict=True))
        return vectors

    def _remember(self, text: str, vector: np.ndarray) -> None:
        self._cache[text] = vector
        self._cache.move_to_end(text)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        """Run only up to the last eot: the mask is causal, so later positions cannot matter."""
        eot = ids.argmax(axis=1)  # the eot id is the largest id, as open_clip's pooling assumes
        length = int(eot.max()) + 1
        w = self._w
        x = w["token_embedding"][ids[:, :length]] + w["positional_embedding"][:length]
        mask = np.triu(np.full((length, length), -np.inf, dtype=np.float32), 1)
        pooled = layer_norm(
            self._blocks(x, mask, keep=eot), w["ln_final.weight"], w["ln_final.bias"], self._eps
        )
        out = pooled @ w["text_projection"]
        if "text_projection_bias" in w:
            out = out + w["text_projection_bias"]
        return normalised(out)


@functools.cache
def _blas() -> ThreadpoolController:
    """The process's thread pools, inspected once: `threadpool_limits` rescans the loaded
    libraries on every call, measured at 0.8 ms per query in a bare process and 3.4 ms in
    `clipsearch serve` (more libraries loaded), against 0.01-0.3 ms for a kept controller."""
    return ThreadpoolController()


# --------------------------------------------------------------------------- export


def export_text_encoder(model: Any, tokenizer: Any, out_dir: Path | str) -> bool:
    """Write what `FastTextEncoder` needs for `model`'s text side into `out_dir`, atomically.

    Returns False, writing nothing, unless the text tower and tokenizer are ones reproduced
    exactly (standard causal CLIP transformer, argmax pooling, default SimpleTokenizer).
    An identical existing export is kept as is.  Raises OSError if writing fails; no partial
    export is ever visible at `out_dir`.
    """
    spec = _describe(model, tokenizer)
    if spec is None:
        return False
    config, tensors, merges = spec
    write_export(out_dir, config, tensors, {MERGES_NAME: "".join(f"{m}\n" for m in merges)})
    return True


def _describe(
    model: Any, tokenizer: Any
) -> tuple[dict[str, Any], dict[str, np.ndarray], list[str]] | None:
    """Config, float32 tensors and merges for a supported model/tokenizer, else None."""
    tower = _text_tower(model)
    if tower is None:
        return None
    merges = _tokenizer_merges(tokenizer, tower.context_length)
    if merges is None:
        return None
    vocab_size = len(merges) + _BASE_VOCAB
    if tower.token_embedding.weight.shape[0] < vocab_size:
        return None
    blocks = block_tensors(tower.transformer.resblocks)
    if blocks is None:
        return None
    tensors, activation, eps = blocks
    ln_final = tower.ln_final
    if not is_layer_norm(ln_final) or ln_final.eps != eps:
        return None
    tensors.update(_projection_tensors(tower.text_projection))
    tensors["token_embedding"] = to_numpy(tower.token_embedding.weight)
    tensors["positional_embedding"] = to_numpy(tower.positional_embedding)
    tensors["ln_final.weight"] = to_numpy(ln_final.weight)
    tensors["ln_final.bias"] = to_numpy(ln_final.bias)
    resblocks = tower.transformer.resblocks
    config = {
        "format": FORMAT,
        "version": VERSION,
        "width": int(tower.positional_embedding.shape[1]),
        "heads": int(resblocks[0].attn.num_heads),
        "layers": len(resblocks),
        "context_length": int(tower.context_length),
        "embed_dim": int(tensors["text_projection"].shape[1]),
        "activation": activation,
        "ln_eps": eps,
        "pooling": "argmax",
        "tokenizer": {
            "kind": "open_clip.SimpleTokenizer",
            "clean": "lower",
            "merges": MERGES_NAME,
            "vocab_size": vocab_size,
        },
    }
    return config, tensors, merges


class _Tower:
    """The parts of a text tower that `CLIP.encode_text` / `TextTransformer.forward` use."""

    def __init__(self, owner: Any, pool_type: str) -> None:
        self.transformer = owner.transformer
        self.token_embedding = owner.token_embedding
        self.positional_embedding = owner.positional_embedding
        self.ln_final = owner.ln_final
        self.text_projection = owner.text_projection
        self.attn_mask = owner.attn_mask
        self.context_length = owner.context_length
        self.pool_type = pool_type


def _text_tower(model: Any) -> _Tower | None:
    """The standard causal, argmax-pooled text tower of an open_clip CLIP/CustomTextCLIP."""
    from open_clip.model import CLIP, CustomTextCLIP
    from open_clip.transformer import TextTransformer

    if type(model) is CLIP:
        tower = _Tower(model, model.text_pool_type)
    elif type(model) is CustomTextCLIP and type(model.text) is TextTransformer:
        if model.text.cls_emb is not None or model.text.use_pad_mask:
            return None
        tower = _Tower(model.text, model.text.pool_type)
    else:
        return None
    ctx = tower.context_length
    width = tower.positional_embedding.shape[-1]
    if tower.text_projection is None:
        return None
    if tower.pool_type != "argmax" or tuple(tower.positional_embedding.shape) != (ctx, width):
        return None
    if not _is_causal(tower.attn_mask, ctx) or tower.token_embedding.weight.shape[1] != width:
        return None
    return tower


def _is_causal(mask: Any, ctx: int) -> bool:
    import torch

    if mask is None or tuple(mask.shape) != (ctx, ctx):
        return False
    return bool(torch.equal(mask.float().cpu(), torch.full((ctx, ctx), -math.inf).triu(1)))


def _tokenizer_merges(tokenizer: Any, ctx: int) -> list[str] | None:
    """The tokenizer's merges if it is a plain SimpleTokenizer that ClipTokenizer reproduces."""
    from open_clip import tokenizer as oct

    if type(tokenizer) is not oct.SimpleTokenizer or tokenizer.reduction_fn is not None:
        return None
    if tokenizer.clean_fn is not oct._clean_lower or tokenizer.context_length != ctx:
        return None
    if tokenizer.pat.pattern != _PATTERN or not tokenizer.pat.flags & regex.IGNORECASE:
        return None
    pairs = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.__getitem__)
    merges = [f"{a} {b}" for a, b in pairs]
    return merges if _vocabulary(merges) == tokenizer.encoder else None


def _projection_tensors(projection: Any) -> dict[str, np.ndarray]:
    """text_projection as (width, embed_dim), plus a bias for nn.Linear projections."""
    from torch import nn

    if isinstance(projection, nn.Linear):
        tensors = {"text_projection": to_numpy(projection.weight).T}
        if projection.bias is not None:
            tensors["text_projection_bias"] = to_numpy(projection.bias)
        return tensors
    return {"text_projection": to_numpy(projection)}
