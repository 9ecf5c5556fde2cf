"""Numpy replay of open_clip transformer blocks: the torch-free text tower runs on these.

Layer norms, exact and quick GELU, softmax and pre-LN attention blocks in float32, with token
columns (width, n x length) so every layer is one `weight @ x` product.  The export that
feeds them is read and written by `exportfile`; `fromtorch` checks a torch tower matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


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
