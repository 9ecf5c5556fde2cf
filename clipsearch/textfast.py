"""Torch-free CLIP text encoder, so a cold `clipsearch query` never pays for importing torch.

`export_text_encoder` runs once where torch is loaded anyway (library create/open) and writes the
text tower of a standard open_clip model to a directory: raw float32 weights in one mmap-able
file with an offset table, the BPE merges and a small JSON config.  `FastTextEncoder` replays
open_clip's tokenizer and text transformer in numpy from that directory.  Only models whose text
side we reproduce exactly are exported; everything else returns False so the caller keeps torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import regex
from threadpoolctl import threadpool_limits

FORMAT = "clipsearch-textfast"
VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.bin"
MERGES_NAME = "bpe_merges.txt"

SOT, EOT = "<start_of_text>", "<end_of_text>"
# open_clip's SimpleTokenizer pre-tokenisation (special tokens first), used with IGNORECASE.
_PATTERN = f"{SOT}|{EOT}" + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_BASE_VOCAB = 2 * 256 + 2  # byte tokens, byte tokens ending a word, start and end
_ALIGN = 16  # tensor offsets in float32 elements (64 bytes), friendly to SIMD loads
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


# --------------------------------------------------------------------------- numerics


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(variance + eps) * weight + bias


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.5e-7 absolute (Abramowitz & Stegun 7.1.26): float32-faithful, no scipy."""
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = np.zeros_like(t)
    for coefficient in _ERF_COEFFICIENTS:
        poly = (poly + coefficient) * t
    return np.copysign(1.0 - poly * np.exp(-a * a), x)


_ERF_COEFFICIENTS = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def _gelu(x: np.ndarray) -> np.ndarray:
    """torch.nn.GELU() (exact, erf based)."""
    return 0.5 * x * (1.0 + _erf(x * np.float32(1 / math.sqrt(2))))


def _quick_gelu(x: np.ndarray) -> np.ndarray:
    """open_clip QuickGELU, x * sigmoid(1.702 x), with sigmoid via tanh so it never overflows."""
    return x * (0.5 + 0.5 * np.tanh(0.851 * x))


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gelu": _gelu,
    "quick_gelu": _quick_gelu,
}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- encoder


class FastTextEncoder:
    """open_clip text tower replayed in float32 numpy from an export directory."""

    def __init__(
        self, config: dict[str, Any], weights: dict[str, np.ndarray], tokenizer: ClipTokenizer
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.embed_dim = int(weights["text_projection"].shape[1])
        self._w = weights
        self._blocks = [_prefixed(weights, f"blocks.{i}.") for i in range(int(config["layers"]))]
        self._heads = int(config["heads"])
        self._eps = float(config["ln_eps"])
        self._act = _ACTIVATIONS[config["activation"]]
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @classmethod
    def load(cls, directory: Path | str) -> FastTextEncoder | None:
        """Open an export, or None if it is absent, incomplete or of another format.

        The directory is opened once and every file is read relative to that handle, so a
        concurrent re-export (which swaps directories) can never mix files of two exports.
        """
        try:
            dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return None
        try:
            return cls._load_pinned(dir_fd)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        finally:
            os.close(dir_fd)

    @classmethod
    def _load_pinned(cls, dir_fd: int) -> FastTextEncoder | None:
        def opener(name: str, flags: int) -> int:
            return os.open(name, flags, dir_fd=dir_fd)

        with open(CONFIG_NAME, encoding="utf-8", opener=opener) as f:
            config = json.load(f)
        if config.get("format") != FORMAT or config.get("version") != VERSION:
            return None
        if config["activation"] not in _ACTIVATIONS or config["pooling"] != "argmax":
            return None
        with open(WEIGHTS_NAME, "rb", opener=opener) as f:
            flat = np.memmap(f, dtype="<f4", mode="r").view(np.ndarray)  # no subclass overhead
        weights = _unflatten(flat, config["tensors"], int(config["weights_size"]))
        with open(MERGES_NAME, encoding="utf-8", opener=opener) as f:
            merges = f.read().splitlines()
        tokenizer = ClipTokenizer(merges, int(config["context_length"]))
        return cls(config, weights, tokenizer)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, embed_dim) float32 L2-normalised text vectors; recent texts come from a cache."""
        found = {t: self._cache[t] for t in texts if t in self._cache}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            found.update(self._encode_uncached(missing))
        for text, vector in found.items():
            self._remember(text, vector)
        if not texts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.stack([found[t] for t in texts])

    def _encode_uncached(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Vectors by text.  These GEMMs have a handful of rows and are memory-bound, so extra
        BLAS threads only spin; on a busy 2-core machine they turned 40 ms into seconds."""
        vectors: dict[str, np.ndarray] = {}
        with threadpool_limits(limits=1, user_api="blas"):
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
        for block in self._blocks:
            x = self._block(x, block, mask)
        pooled = _layer_norm(
            x[np.arange(len(ids)), eot], w["ln_final.weight"], w["ln_final.bias"], self._eps
        )
        out = pooled @ w["text_projection"]
        if "text_projection_bias" in w:
            out = out + w["text_projection_bias"]
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def _block(self, x: np.ndarray, w: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        """Pre-LN residual block: x + attn(ln_1(x)), then + mlp(ln_2(x)).

        Linear weights keep torch's (out, in) layout; `@ w.T` is a BLAS flag, not a copy.
        """
        x = x + self._attention(
            _layer_norm(x, w["ln_1.weight"], w["ln_1.bias"], self._eps), w, mask
        )
        h = _layer_norm(x, w["ln_2.weight"], w["ln_2.bias"], self._eps)
        h = self._act(h @ w["fc.weight"].T + w["fc.bias"])
        return x + (h @ w["proj.weight"].T + w["proj.bias"])

    def _attention(self, x: np.ndarray, w: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        n, length, width = x.shape
        head_dim = width // self._heads
        qkv = (x @ w["qkv.weight"].T + w["qkv.bias"]).reshape(n, length, 3, self._heads, head_dim)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each (n, heads, length, head_dim)
        scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(head_dim**-0.5) + mask
        context = (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(n, length, width)
        return context @ w["out.weight"].T + w["out.bias"]


def _prefixed(weights: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


def _unflatten(flat: np.ndarray, table: dict[str, list[Any]], size: int) -> dict[str, np.ndarray]:
    """Views into the flat weights; a size mismatch means a foreign or truncated file."""
    if flat.size != size:
        raise ValueError(f"weights hold {flat.size} floats, config says {size}")
    views = {}
    for name, (offset, shape) in table.items():
        count = math.prod(shape)
        if offset < 0 or offset + count > size:
            raise ValueError(f"tensor {name} lies outside the weights file")
        views[name] = flat[offset : offset + count].reshape(shape)
    return views


# --------------------------------------------------------------------------- export


def export_text_encoder(model: Any, tokenizer: Any, out_dir: Path | str) -> bool:
    """Write what `FastTextEncoder` needs for `model`'s text side into `out_dir`, atomically.

    Returns False, writing nothing, unless the text tower and tokenizer are ones reproduced
    exactly (standard causal CLIP transformer, argmax pooling, default SimpleTokenizer).
    An identical existing export is kept as is.  Raises OSError if writing fails; no partial
    export is ever visible at `out_dir`.
    """
    out_dir = Path(out_dir)
    spec = _describe(model, tokenizer)
    if spec is None:
        return False
    config, tensors, merges = spec
    merges_text = "".join(f"{m}\n" for m in merges)
    config["fingerprint"] = _fingerprint(config, tensors, merges_text)
    if _existing_fingerprint(out_dir) == config["fingerprint"]:
        return True
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        _write_export(tmp, config, tensors, merges_text)
        _install(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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
    blocks = _block_tensors(tower.transformer.resblocks)
    if blocks is None:
        return None
    tensors, activation, eps = blocks
    ln_final = tower.ln_final
    if not _is_layer_norm(ln_final) or ln_final.eps != eps:
        return None
    tensors.update(_projection_tensors(tower.text_projection))
    tensors["token_embedding"] = _np(tower.token_embedding.weight)
    tensors["positional_embedding"] = _np(tower.positional_embedding)
    tensors["ln_final.weight"], tensors["ln_final.bias"] = _np(ln_final.weight), _np(ln_final.bias)
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


def _block_tensors(blocks: Iterable[Any]) -> tuple[dict[str, np.ndarray], str, float] | None:
    """Per-block tensors, or None if any block is not a plain pre-LN MHA + MLP block."""
    tensors: dict[str, np.ndarray] = {}
    kinds = set()
    for i, block in enumerate(blocks):
        found = _one_block(block)
        if found is None:
            return None
        block_tensors, activation, eps = found
        kinds.add((activation, eps))
        tensors.update({f"blocks.{i}.{k}": v for k, v in block_tensors.items()})
    if len(kinds) != 1:
        return None
    ((activation, eps),) = kinds
    return tensors, activation, eps


def _one_block(block: Any) -> tuple[dict[str, np.ndarray], str, float] | None:
    from open_clip.transformer import ResidualAttentionBlock
    from torch import nn

    if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
        return None
    if not (isinstance(block.ls_1, nn.Identity) and isinstance(block.ls_2, nn.Identity)):
        return None
    attn, mlp = block.attn, block.mlp
    if type(attn) is not nn.MultiheadAttention or not _plain_attention(attn):
        return None
    activation = _activation_name(mlp.gelu)
    norms = (block.ln_1, block.ln_2)
    if activation is None or not all(_is_layer_norm(n) for n in norms):
        return None
    if block.ln_1.eps != block.ln_2.eps or not all(_is_linear(m) for m in (mlp.c_fc, mlp.c_proj)):
        return None
    tensors = {
        "ln_1.weight": _np(block.ln_1.weight),
        "ln_1.bias": _np(block.ln_1.bias),
        "qkv.weight": _np(attn.in_proj_weight),
        "qkv.bias": _np(attn.in_proj_bias),
        "out.weight": _np(attn.out_proj.weight),
        "out.bias": _np(attn.out_proj.bias),
        "ln_2.weight": _np(block.ln_2.weight),
        "ln_2.bias": _np(block.ln_2.bias),
        "fc.weight": _np(mlp.c_fc.weight),
        "fc.bias": _np(mlp.c_fc.bias),
        "proj.weight": _np(mlp.c_proj.weight),
        "proj.bias": _np(mlp.c_proj.bias),
    }
    return tensors, activation, float(block.ln_1.eps)


def _plain_attention(attn: Any) -> bool:
    """Packed q/k/v with biases, no extra key/value tokens."""
    return bool(
        attn._qkv_same_embed_dim
        and attn.in_proj_bias is not None
        and attn.bias_k is None
        and not attn.add_zero_attn
        and attn.out_proj.bias is not None
    )


def _activation_name(act: Any) -> str | None:
    from open_clip.transformer import QuickGELU
    from torch import nn

    if type(act) is QuickGELU:
        return "quick_gelu"
    if type(act) is nn.GELU and act.approximate == "none":
        return "gelu"
    return None


def _is_layer_norm(norm: Any) -> bool:
    from open_clip.transformer import LayerNorm, LayerNormFp32
    from torch import nn

    return (
        type(norm) in (nn.LayerNorm, LayerNorm, LayerNormFp32)
        and norm.weight is not None
        and norm.bias is not None
        and len(norm.normalized_shape) == 1
    )


def _is_linear(layer: Any) -> bool:
    from torch import nn

    return type(layer) is nn.Linear and layer.bias is not None


def _projection_tensors(projection: Any) -> dict[str, np.ndarray]:
    """text_projection as (width, embed_dim), plus a bias for nn.Linear projections."""
    from torch import nn

    if isinstance(projection, nn.Linear):
        tensors = {"text_projection": _np(projection.weight).T}
        if projection.bias is not None:
            tensors["text_projection_bias"] = _np(projection.bias)
        return tensors
    return {"text_projection": _np(projection)}


def _np(tensor: Any) -> np.ndarray:
    return tensor.detach().to("cpu").float().numpy()


def _fingerprint(config: dict[str, Any], tensors: dict[str, np.ndarray], merges: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(config, sort_keys=True).encode())
    digest.update(merges.encode())
    for name in sorted(tensors):
        digest.update(f"{name}{tensors[name].shape}".encode())
        digest.update(np.ascontiguousarray(tensors[name]).data)
    return digest.hexdigest()


def _existing_fingerprint(out_dir: Path) -> str | None:
    try:
        return json.loads((out_dir / CONFIG_NAME).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def _write_export(
    tmp: Path, config: dict[str, Any], tensors: dict[str, np.ndarray], merges_text: str
) -> None:
    """Fill the private temp dir; fsync so the renamed directory is complete after a crash."""
    table: dict[str, list[Any]] = {}
    with open(tmp / WEIGHTS_NAME, "wb") as f:
        offset = 0
        for name, array in sorted(tensors.items()):
            padding = -offset % _ALIGN
            f.write(b"\0" * 4 * padding)
            offset += padding
            table[name] = [offset, list(array.shape)]
            f.write(np.ascontiguousarray(array, dtype="<f4").data)
            offset += array.size
        _sync(f)
    config = {**config, "tensors": table, "weights_size": offset}
    with open(tmp / MERGES_NAME, "w", encoding="utf-8", newline="\n") as f:
        f.write(merges_text)
        _sync(f)
    with open(tmp / CONFIG_NAME, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
        _sync(f)


def _sync(f: Any) -> None:
    f.flush()
    os.fsync(f.fileno())


def _install(tmp: Path, out_dir: Path) -> None:
    """Rename `tmp` to `out_dir`; an old export is first renamed aside (rename cannot replace a
    non-empty directory), so readers see the old export, nothing, or the new one, never a mix.
    Retries because a concurrent exporter may be doing the same dance."""
    for _ in range(50):
        try:
            os.rename(tmp, out_dir)
            return
        except OSError:
            _move_aside(out_dir)
    raise OSError(f"could not install text encoder export at {out_dir}")


def _move_aside(out_dir: Path) -> None:
    trash = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
    try:
        os.rename(out_dir, trash)
    except FileNotFoundError:
        pass  # another exporter moved it first
    finally:
        shutil.rmtree(trash, ignore_errors=True)
