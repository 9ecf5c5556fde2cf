"""Numpy replay of open_clip transformer towers, shared by the torch-free text and image paths.

Export side (torch is loaded anyway): check that a tower's blocks are plain pre-LN attention +
MLP blocks, turn their parameters into float32 arrays and install an export directory
atomically.  Query side (no torch): map the export back as views into one weights file and run
the blocks in float32 numpy.  Torch and open_clip are only imported inside export functions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.bin"
_ALIGN = 16  # tensor offsets in float32 elements (64 bytes), friendly to SIMD loads

# --------------------------------------------------------------------------- numerics


def layer_norm(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, axis: int = -1
) -> np.ndarray:
    """Affine layer norm over `axis`; `weight` and `bias` must broadcast along it."""
    out = x - x.mean(axis=axis, keepdims=True)
    scale = np.mean(out * out, axis=axis, keepdims=True)
    scale += eps
    np.sqrt(scale, out=scale)
    out /= scale
    out *= weight
    out += bias
    return out


def erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.5e-7 absolute (Abramowitz & Stegun 7.1.26): float32-faithful, no scipy.

    |x| is capped at 9, where erf is ±1 in float32 anyway, so exp() never returns subnormals
    (arithmetic on those is many times slower on x86).
    """
    a = np.abs(x)
    np.minimum(a, np.float32(9), out=a)
    t = a * np.float32(0.3275911)
    t += 1
    np.reciprocal(t, out=t)
    first, *rest = _ERF_COEFFICIENTS
    poly = t * np.float32(first)
    for coefficient in rest:
        poly += np.float32(coefficient)
        poly *= t
    a *= a
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a
    np.subtract(1, poly, out=poly)
    return np.copysign(poly, x, out=poly)


_ERF_COEFFICIENTS = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def gelu(x: np.ndarray) -> np.ndarray:
    """torch.nn.GELU() (exact, erf based), computed in place in `x`, which is returned."""
    factor = erf(x * np.float32(1 / math.sqrt(2)))
    factor += 1
    factor *= np.float32(0.5)
    x *= factor
    return x


def quick_gelu(x: np.ndarray) -> np.ndarray:
    """open_clip QuickGELU, x * sigmoid(1.702 x), in place in `x`, which is returned.

    sigmoid goes through tanh so it never overflows."""
    factor = np.tanh(x * np.float32(0.851))
    factor *= np.float32(0.5)
    factor += np.float32(0.5)
    x *= factor
    return x


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gelu": gelu,
    "quick_gelu": quick_gelu,
}


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in place in `x`, which is returned."""
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


@dataclass(frozen=True)
class Blocks:
    """A stack of open_clip `ResidualAttentionBlock`s and the settings they share.

    Inside the stack tokens are columns, (width, n x length): every linear layer is then
    `weight @ x` on torch's (out, in) weight layout, the operand order OpenBLAS runs fastest
    for the few dozen tokens of one query (measured for ViT-B-32 shapes: ~10% ahead of
    `x @ weight.T` with its AVX-512 kernels, even with its AVX2 ones).
    """

    weights: list[dict[str, np.ndarray]]
    heads: int
    eps: float
    activation: Callable[[np.ndarray], np.ndarray]

    @classmethod
    def from_export(cls, config: Mapping[str, Any], weights: dict[str, np.ndarray]) -> Blocks:
        """The blocks an export describes with `layers`, `heads`, `ln_eps` and `activation`."""
        layers = range(int(config["layers"]))
        return cls(
            [_prefixed(weights, f"blocks.{i}.") for i in layers],
            int(config["heads"]),
            float(config["ln_eps"]),
            ACTIVATIONS[config["activation"]],
        )

    def __call__(
        self, x: np.ndarray, mask: np.ndarray | None = None, keep: np.ndarray | None = None
    ) -> np.ndarray:
        """(n, length, width) tokens through every block; `mask` is added to attention scores.

        With `keep` (one position per sequence) only those tokens come out, (n, width): the
        last block then computes queries and MLP for them alone, as nothing else is read.
        """
        n, length, width = x.shape
        tokens = Tokens(x.reshape(n * length, width).T.copy(), n)  # C order, never a view
        last = len(self.weights) if keep is None else len(self.weights) - 1
        for w in self.weights[:last]:
            tokens = self._block(tokens, w, mask)
        if keep is None:
            return tokens.x.T.reshape(n, length, width)
        kept = np.arange(n) * length + keep
        rows = None if mask is None else mask[keep][:, None, None, :]
        return self._block(tokens, self.weights[-1], rows, kept).x.T

    def _block(
        self,
        tokens: Tokens,
        w: dict[str, np.ndarray],
        mask: np.ndarray | None,
        kept: np.ndarray | None = None,
    ) -> Tokens:
        """Pre-LN residual block: x + attn(ln_1(x)), then + mlp(ln_2(x)).

        With `kept` (column numbers), only those columns are updated and returned."""
        h = self._norm(tokens.x, w, "ln_1")
        x = tokens.x if kept is None else tokens.x[:, kept]
        x += self._attention(Tokens(h, tokens.n), w, mask, kept)
        h = _linear(w, "fc", self._norm(x, w, "ln_2"))
        x += _linear(w, "proj", self.activation(h))
        return Tokens(x, tokens.n)

    def _norm(self, x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
        weight, bias = w[f"{name}.weight"][:, None], w[f"{name}.bias"][:, None]
        return layer_norm(x, weight, bias, self.eps, axis=0)

    def _attention(
        self,
        tokens: Tokens,
        w: dict[str, np.ndarray],
        mask: np.ndarray | None,
        kept: np.ndarray | None,
    ) -> np.ndarray:
        """Multi-head self-attention of the columns; queries only from `kept` if given."""
        width, columns = tokens.x.shape
        n, heads = tokens.n, self.heads
        grid = (heads, width // heads, n, -1)  # a column block as (head, dim, sequence, position)
        k, v = _linear(w, "qkv", tokens.x, rows=slice(width, None)).reshape(2, *grid)
        queries = tokens.x if kept is None else tokens.x[:, kept]
        q = _linear(w, "qkv", queries, rows=slice(0, width)).reshape(grid)
        scores = q.transpose(2, 0, 3, 1) @ k.transpose(2, 0, 1, 3)  # (n, heads, queries, keys)
        scores *= np.float32((width // heads) ** -0.5)
        if mask is not None:
            scores += mask
        context = softmax(scores) @ v.transpose(2, 0, 3, 1)  # (n, heads, queries, dim)
        return _linear(w, "out", context.transpose(1, 3, 0, 2).reshape(width, -1))


class Tokens(NamedTuple):
    """Token columns (width, n x length) of n sequences of equal length."""

    x: np.ndarray
    n: int


def _linear(
    w: dict[str, np.ndarray], name: str, x: np.ndarray, rows: slice = slice(None)
) -> np.ndarray:
    """`weight @ x + bias` for token columns, optionally for a slice of the output rows."""
    out = w[f"{name}.weight"][rows] @ x
    out += w[f"{name}.bias"][rows, None]
    return out


def _prefixed(weights: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


# --------------------------------------------------------------------------- loading


class Export(NamedTuple):
    """An export directory read back: its config, weight views and named text files."""

    config: dict[str, Any]
    weights: dict[str, np.ndarray]
    texts: dict[str, str]


def load_export(
    directory: Path | str, fmt: str, version: int, text_names: Sequence[str] = ()
) -> Export | None:
    """Open an export, or None if it is absent, incomplete or of another format/version.

    The directory is opened once and every file is read relative to that handle, so a
    concurrent re-export (which swaps directories) can never mix files of two exports.
    Weights are a read-only memory map: loading costs no reading, pages come in on first use.
    """
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None
    try:
        return _load_pinned(dir_fd, fmt, version, text_names)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        os.close(dir_fd)


def _load_pinned(dir_fd: int, fmt: str, version: int, text_names: Sequence[str]) -> Export | None:
    def opener(name: str, flags: int) -> int:
        return os.open(name, flags, dir_fd=dir_fd)

    with open(CONFIG_NAME, encoding="utf-8", opener=opener) as f:
        config = json.load(f)
    if config.get("format") != fmt or config.get("version") != version:
        return None
    with open(WEIGHTS_NAME, "rb", opener=opener) as f:
        flat = np.memmap(f, dtype="<f4", mode="r").view(np.ndarray)  # no subclass overhead
    weights = _unflatten(flat, config["tensors"], int(config["weights_size"]))
    texts = {}
    for name in text_names:
        with open(name, encoding="utf-8", opener=opener) as f:
            texts[name] = f.read()
    return Export(config, weights, texts)


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


# --------------------------------------------------------------------------- writing


def write_export(
    out_dir: Path | str,
    config: dict[str, Any],
    tensors: dict[str, np.ndarray],
    files: Mapping[str, str | bytes] | None = None,
) -> None:
    """Install `config` (plus a fingerprint and the tensor table), `tensors` and the named
    `files` (text or bytes) as an export directory at `out_dir`, atomically.

    An identical existing export is kept as is.  Raises OSError if writing fails; no partial
    export is ever visible at `out_dir`.
    """
    out_dir = Path(out_dir)
    contents = {name: _as_bytes(data) for name, data in (files or {}).items()}
    config = {**config, "fingerprint": _fingerprint(config, tensors, contents)}
    if _existing_fingerprint(out_dir) == config["fingerprint"]:
        return
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        _write_files(tmp, config, tensors, contents)
        _install(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tensor_table(tensors: Mapping[str, np.ndarray]) -> tuple[dict[str, list[Any]], int]:
    """Where `write_export` puts each tensor in the weights file: name -> [offset, shape] in
    float32 elements, by sorted name, each offset aligned; and the total size."""
    table: dict[str, list[Any]] = {}
    offset = 0
    for name, array in sorted(tensors.items()):
        offset += -offset % _ALIGN
        table[name] = [offset, list(array.shape)]
        offset += array.size
    return table, offset


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _fingerprint(
    config: dict[str, Any], tensors: dict[str, np.ndarray], files: dict[str, bytes]
) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(config, sort_keys=True).encode())
    for name in sorted(files):
        digest.update(files[name])
    for name in sorted(tensors):
        digest.update(f"{name}{tensors[name].shape}".encode())
        digest.update(np.ascontiguousarray(tensors[name]).data)
    return digest.hexdigest()


def _existing_fingerprint(out_dir: Path) -> str | None:
    try:
        return json.loads((out_dir / CONFIG_NAME).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def _write_files(
    tmp: Path, config: dict[str, Any], tensors: dict[str, np.ndarray], files: dict[str, bytes]
) -> None:
    """Fill the private temp dir; fsync so the renamed directory is complete after a crash."""
    table, size = tensor_table(tensors)
    with open(tmp / WEIGHTS_NAME, "wb") as f:
        for name, array in sorted(tensors.items()):
            f.seek(4 * table[name][0])  # the alignment gap reads back as zeros
            f.write(np.ascontiguousarray(array, dtype="<f4").data)
        f.truncate(4 * size)
        _sync(f)
    for name, data in files.items():
        with open(tmp / name, "wb") as f:
            f.write(data)
            _sync(f)
    with open(tmp / CONFIG_NAME, "w", encoding="utf-8") as f:
        json.dump({**config, "tensors": table, "weights_size": size}, f, indent=1)
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
    raise OSError(f"could not install export at {out_dir}")


def _move_aside(out_dir: Path) -> None:
    trash = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
    try:
        os.rename(out_dir, trash)
    except FileNotFoundError:
        pass  # another exporter moved it first
    finally:
        shutil.rmtree(trash, ignore_errors=True)


# --------------------------------------------------------------------------- torch side


class BlockSpec(NamedTuple):
    """Tensors of a block stack (`blocks.{i}.` names) and the settings `Blocks` needs."""

    tensors: dict[str, np.ndarray]
    activation: str
    eps: float


def block_tensors(blocks: Iterable[Any]) -> BlockSpec | None:
    """Per-block tensors, or None if any block is not a plain pre-LN MHA + MLP block or the
    blocks disagree on activation or layer-norm eps."""
    tensors: dict[str, np.ndarray] = {}
    kinds = set()
    for i, block in enumerate(blocks):
        found = _one_block(block)
        if found is None:
            return None
        kinds.add((found.activation, found.eps))
        tensors.update({f"blocks.{i}.{k}": v for k, v in found.tensors.items()})
    if len(kinds) != 1:
        return None
    ((activation, eps),) = kinds
    return BlockSpec(tensors, activation, eps)


def _one_block(block: Any) -> BlockSpec | None:
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
    if activation is None or not all(is_layer_norm(n) for n in norms):
        return None
    if block.ln_1.eps != block.ln_2.eps or not all(_is_linear(m) for m in (mlp.c_fc, mlp.c_proj)):
        return None
    tensors = {
        "ln_1.weight": to_numpy(block.ln_1.weight),
        "ln_1.bias": to_numpy(block.ln_1.bias),
        "qkv.weight": to_numpy(attn.in_proj_weight),
        "qkv.bias": to_numpy(attn.in_proj_bias),
        "out.weight": to_numpy(attn.out_proj.weight),
        "out.bias": to_numpy(attn.out_proj.bias),
        "ln_2.weight": to_numpy(block.ln_2.weight),
        "ln_2.bias": to_numpy(block.ln_2.bias),
        "fc.weight": to_numpy(mlp.c_fc.weight),
        "fc.bias": to_numpy(mlp.c_fc.bias),
        "proj.weight": to_numpy(mlp.c_proj.weight),
        "proj.bias": to_numpy(mlp.c_proj.bias),
    }
    return BlockSpec(tensors, activation, float(block.ln_1.eps))


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


def is_layer_norm(norm: Any) -> bool:
    """An affine layer norm over the last dimension, which `layer_norm` reproduces."""
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


def to_numpy(tensor: Any) -> np.ndarray:
    """A float32 CPU copy of a parameter, whatever the model's device and precision."""
    return tensor.detach().to("cpu").float().numpy()
