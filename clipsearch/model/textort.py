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

    def __init__(self, config: dict[str, Any], tokens: HFTokens, session: Any) -> None:
        self.config = config
        self.dim = int(config["embed_dim"])
        self.tokenizer = tokens
        self._session = session
        self._input = session.get_inputs()[0].name
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
        return None if session is None else cls(export.config, tokens, session)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 L2-normalised vectors; recent texts come from a cache."""
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for start in range(0, len(missing), _BATCH):
            chunk = missing[start : start + _BATCH]
            (out,) = self._session.run(None, {self._input: self.tokenizer(chunk)})
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
    """Write the ONNX text tower and tokenizer.json of a model with a Hugging Face tokenizer;
    False, writing nothing, for any other tokenizer or a tower that does not trace."""
    described = describe_tokenizer(tokenizer)
    if described is not None:
        config, files = {"tokenizer": "hf", **described[0]}, {TOKENIZER_NAME: described[1]}
    else:
        from .textnp import _tokenizer_merges

        ctx = getattr(tokenizer, "context_length", None)
        merges = _tokenizer_merges(tokenizer, ctx)
        if merges is None:
            return False
        config = {"tokenizer": "clip-bpe", "context_length": int(ctx)}
        files = {MERGES_NAME: "".join(f"{m}\n" for m in merges)}
    graph = trace(_TextGraph(model), _sample_ids(tokenizer), "ids")
    if graph is None:
        return False
    dim = int(model.encode_text(_sample_ids(tokenizer)).shape[1])
    config = {"format": FORMAT, "version": VERSION, "embed_dim": dim, **config}
    placeholder = {"unused": np.zeros(1, np.float32)}  # the weights live in the graph
    write_export(out_dir, config, placeholder, {**files, GRAPH_NAME: graph})
    return True


def _sample_ids(tokenizer: Any) -> Any:
    """Two texts of different lengths: a trace must not bake in one text's length."""
    return tokenizer(["a photo of a dog", "two cats asleep on a red sofa by the window"])


def _TextGraph(model: Any) -> Any:  # noqa: N802 - a module factory, built only with torch
    import torch

    class TextGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.model.encode_text(ids)

    return TextGraph().eval()


def trace(module: Any, sample: Any, input_name: str) -> bytes | None:
    """`module` as ONNX bytes with a dynamic batch axis (TorchScript exporter, opset 17),
    or None if it does not export."""
    import warnings

    import torch

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
                (sample,),
                buffer,
                dynamo=False,
                input_names=[input_name],
                output_names=["vectors"],
                dynamic_axes={input_name: {0: "batch"}, "vectors": {0: "batch"}},
                opset_version=17,
            )
    except Exception:  # an op the exporter lacks: torch keeps this tower
        return None
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return buffer.getvalue()
