"""Torch-free text tower for every open_clip family whose tokenizer is a Hugging Face one
(SigLIP and SigLIP2, XLM-R, NLLB): an ONNX graph run by onnxruntime, fed by the `tokenizers`
library reading the model's own `tokenizer.json`.

open_clip's `HFTokenizer` cleans the text, then calls a transformers fast tokenizer, which
is the `tokenizers` library with the same JSON underneath; here the same JSON is read by that
library directly, with the padding and truncation transformers would set, so the ids match by
construction (tests check thousands of strings).  The graph is `encode_text` traced by
torch.onnx once, where torch is loaded anyway.  CLIP's own BPE tower keeps its numpy replay
(`textnp`), which needs neither onnxruntime nor a tokenizer library.
"""

from __future__ import annotations

import io
import json
import string
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import normalised
from .exportfile import CONFIG_NAME, load_export, write_export

FORMAT = "clipsearch-textort"
VERSION = 1
GRAPH_NAME = "text.onnx"
TOKENIZER_NAME = "tokenizer.json"
MERGES_NAME = "bpe_merges.txt"  # CLIP's BPE, for CLIP towers the numpy replay does not cover
CLEANERS = ("canonicalize", "lower", "whitespace")
_BATCH = 64
_CACHE_SIZE = 256
_PUNCTUATION = str.maketrans("", "", string.punctuation)


# --------------------------------------------------------------------------- tokenizer


def _basic_clean(text: str) -> str:
    """open_clip's basic cleaning: ftfy, HTML unescaped twice, stripped."""
    if not (text.isascii() and text.isprintable() and "&" not in text):
        import html

        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return text.strip()


def clean(text: str, how: str) -> str:
    """open_clip's `clean` modes of HFTokenizer: 'canonicalize' (SigLIP: no punctuation,
    lower case), 'lower' and 'whitespace' (XLM-R)."""
    text = _basic_clean(text)
    if how == "canonicalize":
        text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    elif how == "lower":
        text = text.lower()
    return " ".join(text.split())


class HFTokens:
    """Texts to (n, context_length) int64 ids, as open_clip's HFTokenizer makes them."""

    def __init__(self, tokenizer_json: str, config: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        ctx = int(config["context_length"])
        self._clean = config["clean"]
        self._sep = config.get("strip_sep_id")
        tokenizer = Tokenizer.from_str(tokenizer_json)
        tokenizer.no_padding()
        tokenizer.enable_truncation(ctx, direction=config["truncation_side"])
        tokenizer.enable_padding(
            length=ctx,
            direction=config["padding_side"],
            pad_id=int(config["pad_id"]),
            pad_token=config["pad_token"],
        )
        self._tokenizer = tokenizer

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        cleaned = [clean(t, self._clean) for t in texts]
        ids = np.array([e.ids for e in self._tokenizer.encode_batch(cleaned)], dtype=np.int64)
        if self._sep is not None:
            ids[ids == self._sep] = 0
        return ids


def describe_tokenizer(tokenizer: Any) -> tuple[dict[str, Any], str] | None:
    """Config and tokenizer.json of an open_clip HFTokenizer over a fast tokenizer in its
    standard mode, else None (CLIP's SimpleTokenizer, sentencepiece-only tokenizers)."""
    from open_clip import tokenizer as oct

    if type(tokenizer) is not oct.HFTokenizer or tokenizer.tokenizer_mode:
        return None
    hf = tokenizer.tokenizer
    backend = getattr(hf, "backend_tokenizer", None)
    names = {
        oct._clean_canonicalize: "canonicalize",
        oct._clean_lower: "lower",
        oct._clean_whitespace: "whitespace",
    }
    how = names.get(tokenizer.clean_fn)
    if backend is None or how is None or hf.pad_token_id is None:
        return None
    config = {
        "context_length": int(tokenizer.context_length),
        "clean": how,
        "pad_id": int(hf.pad_token_id),
        "pad_token": str(hf.pad_token),
        "padding_side": hf.padding_side,
        "truncation_side": hf.truncation_side,
        "strip_sep_id": int(hf.sep_token_id) if tokenizer.strip_sep_token else None,
    }
    return config, backend.to_str()


# --------------------------------------------------------------------------- encoder


class OnnxTextEncoder:
    """A text tower exported to ONNX, run by onnxruntime after `HFTokens`."""

    def __init__(
        self, config: dict[str, Any], tokens: Any, table: np.ndarray, session: Any
    ) -> None:
        self.config = config
        self.dim = int(config["embed_dim"])
        self.tokenizer = tokens
        self._table = table  # memory-mapped: a query reads only its tokens' rows
        self._session = session
        self._inputs = {i.name for i in session.get_inputs()}  # a trace may drop unused ids
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @classmethod
    def load(cls, directory: Path | str) -> OnnxTextEncoder | None:
        """Open an export, or None if it is absent, of another format, or not runnable here."""
        export = load_export(directory, FORMAT, VERSION)
        if export is None:
            return None
        try:
            tokens = _tokens(Path(directory), export.config)
        except Exception:  # no tokenizers library, or a tokenizer.json it cannot read
            return None
        session = session_for(Path(directory) / GRAPH_NAME, directory, export.config)
        table = export.weights.get("token_embedding")
        if session is None or table is None:
            return None
        return cls(export.config, tokens, table, session)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 L2-normalised vectors; recent texts come from a cache."""
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for start in range(0, len(missing), _BATCH):
            chunk = missing[start : start + _BATCH]
            (out,) = self._session.run(None, self._feed(self.tokenizer(chunk)))
            for text, vector in zip(chunk, normalised(out), strict=True):
                self._cache[text] = vector
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        found = np.stack([self._cache[t] for t in texts])
        for text in texts:
            self._cache.move_to_end(text)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return found

    def _feed(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        if self.config.get("trim"):
            length = max(1, int((ids != int(self.config["pad_id"])).sum(axis=1).max()))
            ids = np.ascontiguousarray(ids[:, :length])
        feed = {"ids": ids, "embeds": np.ascontiguousarray(self._table[ids], dtype=np.float32)}
        return {name: value for name, value in feed.items() if name in self._inputs}


def _tokens(directory: Path, config: dict[str, Any]) -> Any:
    if config["tokenizer"] == "clip-bpe":
        from .textnp import ClipTokenizer

        merges = (directory / MERGES_NAME).read_text(encoding="utf-8").splitlines()
        return ClipTokenizer(merges, int(config["context_length"]))
    return HFTokens((directory / TOKENIZER_NAME).read_text(encoding="utf-8"), config)


def session_for(graph: Path, directory: Path | str, config: dict[str, Any]) -> Any | None:
    """An onnxruntime session over `graph`, or None if it cannot be opened or the export was
    replaced meanwhile (the fingerprint in config.json changed)."""
    from .imageort import session_options

    try:
        import onnxruntime

        session = onnxruntime.InferenceSession(
            str(graph), session_options(), providers=["CPUExecutionProvider"]
        )
        now = json.loads((Path(directory) / CONFIG_NAME).read_text(encoding="utf-8"))
    except Exception:  # onnxruntime's errors derive from Exception only
        return None
    return session if now.get("fingerprint") == config.get("fingerprint") else None


def has_export(directory: Path | str) -> bool:
    return load_export(directory, FORMAT, VERSION) is not None


# --------------------------------------------------------------------------- export


def export_onnx_text(model: Any, tokenizer: Any, out_dir: Path | str) -> bool:
    """Write the ONNX text tower and the tokenizer of a model; False, writing nothing, for a
    tokenizer not replayed exactly or a tower that does not trace.

    The token embedding table stays out of the graph, in the export's memory-mapped weights:
    a query gathers its few rows there.  Inside the graph it made onnxruntime read and pack
    SigLIP2's 786 MB table (256,000 x 768) on every cold start."""
    described = _describe_tokens(tokenizer)
    if described is None:
        return False
    config, files = described
    sample = _sample_ids(tokenizer)
    with torch_no_grad():
        dim = int(model.encode_text(sample).shape[1])
    found = _vocab_embedding(model)
    if found is None:
        return False
    parent, attr, table = found
    trim = _padding_is_masked(model, config)
    graph = _trace_without_table(model, parent, attr, table, sample, trim)
    if graph is None:
        return False
    config = {"format": FORMAT, "version": VERSION, "embed_dim": dim, "trim": trim, **config}
    weights = {"token_embedding": _table_rows(table)}
    write_export(out_dir, config, weights, {**files, GRAPH_NAME: graph})
    return True


def _describe_tokens(tokenizer: Any) -> tuple[dict[str, Any], dict[str, str]] | None:
    """Config and files of a Hugging Face tokenizer, or of CLIP's BPE; else None."""
    described = describe_tokenizer(tokenizer)
    if described is not None:
        return {"tokenizer": "hf", **described[0]}, {TOKENIZER_NAME: described[1]}
    from .textnp import _tokenizer_merges

    ctx = getattr(tokenizer, "context_length", None)
    merges = _tokenizer_merges(tokenizer, ctx)
    if merges is None:
        return None
    config = {"tokenizer": "clip-bpe", "context_length": int(ctx)}
    return config, {MERGES_NAME: "".join(f"{m}\n" for m in merges)}


def torch_no_grad() -> Any:
    import torch

    return torch.no_grad()


def _vocab_embedding(model: Any) -> tuple[Any, str, Any] | None:
    """(parent, attribute, module) of the text side's largest nn.Embedding: the token table
    (open_clip's token_embedding, word_embeddings in a Hugging Face tower, or NLLB's
    M2M100ScaledWordEmbedding, a subclass that scales its rows)."""
    from torch import nn

    best = None
    for name, module in model.named_modules():
        if name == "visual" or name.startswith("visual."):
            continue
        for attr, child in module.named_children():
            if isinstance(child, nn.Embedding) and (
                best is None or child.num_embeddings > best[2].num_embeddings
            ):
                best = (module, attr, child)
    return best


def _table_rows(table: Any) -> np.ndarray:
    """Every row as the tower receives it: the module's own forward over all ids, so a
    subclass's scaling (NLLB multiplies by sqrt(width)) is in the stored table."""
    import torch

    with torch.no_grad():
        ids = torch.arange(table.num_embeddings, device=table.weight.device)
        return table(ids).float().cpu().numpy()


def _trace_without_table(
    model: Any, parent: Any, attr: str, table: Any, sample: Any, trim: bool
) -> bytes | None:
    """Trace `encode_text(ids)` with the token table swapped for a second input holding the
    rows it would have looked up; the table is put back whatever happens."""
    import torch

    class Given(torch.nn.Module):
        value: Any = None

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.value

    given = Given()

    class TextGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
            given.value = embeds
            return self.model.encode_text(ids)

    setattr(parent, attr, given)
    try:
        graph = TextGraph().eval()
        return trace(graph, (sample, table(sample)), ("ids", "embeds"), tokens_axis=trim)
    finally:
        setattr(parent, attr, table)
        given.value = None


def _padding_is_masked(model: Any, config: dict[str, Any]) -> bool:
    """Whether trailing padding changes nothing: open_clip's Hugging Face text towers mask
    the pad tokens out of attention and pooling, so a batch can stop at its longest text
    (XLM-R: 118 ms a warm query at 77 tokens).  CLIP and SigLIP towers let pads attend, or
    pool at the last position, so they always run the full context."""
    from open_clip.hf_model import HFTextEncoder

    text = getattr(model, "text", None)
    return type(text) is HFTextEncoder and config.get("padding_side") == "right"


def _sample_ids(tokenizer: Any) -> Any:
    """Two texts of different lengths: a trace must not bake in one text's length."""
    return tokenizer(["a photo of a dog", "two cats asleep on a red sofa by the window"])


def trace(
    module: Any, sample: Any, input_names: str | tuple[str, ...], tokens_axis: bool = False
) -> bytes | None:
    """`module` as ONNX bytes with a dynamic batch axis on every input (TorchScript exporter,
    opset 17), or None if it does not export.  `sample` is one input or a tuple of them;
    `tokens_axis` makes their second axis dynamic too."""
    import warnings

    import torch

    names = (input_names,) if isinstance(input_names, str) else input_names
    axes = {0: "batch", 1: "tokens"} if tokens_axis else {0: "batch"}
    buffer = io.BytesIO()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # nn.MultiheadAttention's fused inference kernel has no ONNX form; the plain path does
    # the same arithmetic.
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                sample if isinstance(sample, tuple) else (sample,),
                buffer,
                dynamo=False,
                input_names=list(names),
                output_names=["vectors"],
                dynamic_axes={**{n: axes for n in names}, "vectors": {0: "batch"}},
                opset_version=17,
            )
    except Exception:  # an op the exporter lacks: torch keeps this tower
        return None
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return buffer.getvalue()
