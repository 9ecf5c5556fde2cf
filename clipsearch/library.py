"""The Python API: `Library.open(...).index(paths)` and `.search("dog")`.

The CLI is a thin layer over this class.  It wires the modules together in data-flow order:
scanner → pipeline (imaging + encoder) → store; query → encoder or torch-free text path →
vector index → hits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import vectorindex
from .errors import ClipsearchError, ImageError
from .hits import Hit
from .locking import write_lock
from .query import Term, combine, parse_terms
from .store import Skipped, Store
from .vectorcache import current_index, drop_stale_files, save_index
from .weights import ModelSpec, normalise, preflight

if TYPE_CHECKING:
    from .indexer import IndexReport, Progress
    from .textfast import FastTextEncoder
    from .visionfast import FastImageEncoder

DEFAULT_MODEL = ModelSpec("ViT-B-32", "laion2b_s34b_b79k")
TEXT_EXPORT = "text"
IMAGE_EXPORT = "image"
THUMBNAILS = "thumbnails"
# Cosine above which two photos count as near-duplicates for CLIP ViT-B models (see README).
DUPE_THRESHOLD = 0.95


def default_home() -> Path:
    """$CLIPSEARCH_HOME, else the XDG data folder."""
    if os.environ.get("CLIPSEARCH_HOME"):
        return Path(os.environ["CLIPSEARCH_HOME"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(xdg) / "clipsearch"


def choose_model(recorded: ModelSpec | None, model: str | None, pretrained: str | None):
    """The library's model wins; asking for a different one is an error, not a silent switch."""
    if recorded is None:
        if model is None or model == DEFAULT_MODEL.name:
            return normalise(ModelSpec(DEFAULT_MODEL.name, pretrained or DEFAULT_MODEL.pretrained))
        if pretrained is None:
            raise ClipsearchError(
                f"--model {model} needs --pretrained TAG or --pretrained FILE as well"
            )
        return normalise(ModelSpec(model, pretrained))
    wanted = ModelSpec(model or recorded.name, pretrained or recorded.pretrained)
    if (model or pretrained) and normalise_quiet(wanted) != recorded:
        raise ClipsearchError(
            f"this library was built with {recorded.label()}, not {wanted.label()}: "
            "drop --model/--pretrained, or use another --library"
        )
    return recorded


def normalise_quiet(spec: ModelSpec) -> ModelSpec:
    if spec.is_file:
        return ModelSpec(spec.name, os.path.abspath(os.path.expanduser(spec.pretrained)))
    return spec


class Library:
    """A photo library on disk and the model that embeds it."""

    def __init__(self, store: Store, spec: ModelSpec, device: str, batch_size: int | None):
        self.store = store
        self.spec = spec
        self.device = device
        self.batch_size = batch_size
        self._encoder = None
        self._loaded_index: tuple[int, object] | None = None
        self._fast: dict[str, FastTextEncoder | FastImageEncoder | None] = {}

    @classmethod
    def open(
        cls,
        directory: os.PathLike | str | None = None,
        *,
        model: str | None = None,
        pretrained: str | None = None,
        device: str = "auto",
        batch_size: int | None = None,
        create: bool = False,
    ) -> Library:
        store = Store.open(Path(directory) if directory else default_home(), create=create)
        try:
            spec = choose_model(store.model_spec(), model, pretrained)
        except ClipsearchError:
            store.close()
            raise
        return cls(store, spec, device, batch_size)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def directory(self) -> Path:
        return self.store.directory

    # -- the encoder ----------------------------------------------------------------------

    @property
    def encoder(self):
        """The torch model, loaded on first use; records the model in a new library."""
        if self._encoder is None:
            preflight(self.spec)
            from .encoder import ClipEncoder

            encoder = ClipEncoder(self.spec, self.device)
            _check_dim(self.store.dim(), encoder.dim, self.spec)
            self._encoder = encoder
            if self.store.model_spec() is None:
                self.store.record_model(self.spec, self._encoder.dim)
            self._export_text_path()
            self._export_image_path()
        return self._encoder

    def _export_text_path(self) -> None:
        """Export the text tower once, so later queries need neither torch nor open_clip."""
        from .textfast import FastTextEncoder

        if FastTextEncoder.load(self.directory / TEXT_EXPORT) is None:
            self._encoder.export_text_path(self.directory / TEXT_EXPORT)

    def _export_image_path(self) -> None:
        """Export the image tower once, so embedding a new photo needs no torch either."""
        from .visionfast import has_export

        if not has_export(self.directory / IMAGE_EXPORT):
            self._encoder.export_image_path(self.directory / IMAGE_EXPORT)

    def use_encoder(self, encoder) -> None:
        """Swap in another encoder with the same interface (tests, custom models)."""
        self._encoder = encoder
        if self.store.model_spec() is None:
            self.store.record_model(self.spec, encoder.dim)

    # -- indexing -------------------------------------------------------------------------

    def index(
        self,
        paths: Sequence[os.PathLike | str] = (),
        *,
        excludes: Sequence[str] = (),
        default_excludes: bool = True,
        raw_too: bool = False,
        max_pixels: int | None = None,
        progress: Progress | None = None,
        wait: bool = True,
        on_wait: Callable[[str], None] | None = None,
    ) -> IndexReport:
        """Bring the library up to date with `paths` (or with every known root)."""
        from . import scanner
        from .indexer import run_index

        roots = [scanner.normalise_root(p) for p in paths] or self._known_roots()
        with self.store.saving(), write_lock(self.directory, wait=wait, on_wait=on_wait):
            scan = scanner.scan(
                roots, excludes=excludes, default_excludes=default_excludes, raw_too=raw_too
            )
            report = run_index(
                self.store,
                roots,
                scan,
                lambda: self.encoder,
                batch_size=self.batch_size,
                max_pixels=max_pixels,
                progress=progress,
            )
            try:
                self._refresh_vector_file()
            except KeyboardInterrupt:  # the work is committed; the cache is rebuilt on demand
                report.interrupted = True
        return report

    def _known_roots(self) -> list[str]:
        roots = self.store.roots()
        if not roots:
            raise ClipsearchError(
                "nothing to index: give a folder, e.g. `clipsearch index ~/Photos`"
            )
        return [r for r in roots if os.path.isdir(r)] or roots

    def _refresh_vector_file(self) -> None:
        index, up_to_date = current_index(self.store)
        if up_to_date:
            drop_stale_files(self.store)  # a killed run may have saved but not cleaned up
        else:
            save_index(self.store, index)

    def forget(self, directory: os.PathLike | str, *, wait: bool = True, on_wait=None) -> int:
        """Drop a root folder and everything indexed below it."""
        path = os.path.abspath(os.path.expanduser(os.fspath(directory)))
        if path not in self.store.roots():
            roots = ", ".join(self.store.roots()) or "none"
            raise ClipsearchError(f"{directory} is not an indexed root (roots: {roots})")
        with self.store.saving(), write_lock(self.directory, wait=wait, on_wait=on_wait):
            self.store.begin()
            removed = self.store.forget_root(path)
            self.store.commit()
            self._refresh_vector_file()
        return removed

    # -- searching ------------------------------------------------------------------------

    def search(
        self,
        *terms: str,
        add: Sequence[str] = (),
        sub: Sequence[str] = (),
        top: int = 10,
        min_score: float | None = None,
        within: os.PathLike | str | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        """Best matches for the combined query terms, best first."""
        if top < 1:
            raise ClipsearchError(f"--top must be at least 1, not {top}")
        parsed = parse_terms(terms, add, sub)
        if self.store.is_empty():
            return []
        vector = combine(parsed, self.embed_term)
        return self.search_vector(vector, top, min_score, within, exact)

    def similar(self, image: str, *, top: int = 10, min_score=None, within=None) -> list[Hit]:
        """Photos that look like `image` (indexed or not), without the image itself."""
        path = os.path.abspath(os.path.expanduser(image))
        if not os.path.isfile(path):
            raise ClipsearchError(f"no such image file: {image}")
        if top < 1:
            raise ClipsearchError(f"--top must be at least 1, not {top}")
        if self.store.is_empty():
            return []
        hits = self.search_vector(self.embed_image(path), top + 1, min_score, within)
        others = [h for h in hits if h.path != path][:top]
        return [Hit(rank, h.score, h.path) for rank, h in enumerate(others, 1)]

    def duplicates(self, within=None, threshold: float = DUPE_THRESHOLD) -> list:
        """Groups of near-duplicate photos, likeliest first."""
        from .dupes import find_groups

        ids = self.store.ids() if within is None else self.store.ids_under(_absolute(within))
        chunks = list(self.store.vectors(ids))
        if not chunks or not len(ids):
            return []
        found_ids = np.concatenate([c[0] for c in chunks])
        vectors = np.ascontiguousarray(np.concatenate([c[1] for c in chunks]))
        paths = self.store.paths_for(found_ids)
        return find_groups(vectors, [paths[int(i)] for i in found_ids], threshold)

    def thumbnails(self):
        from .thumbnails import ThumbnailCache

        return ThumbnailCache(self.directory / THUMBNAILS)

    def search_vector(
        self, vector: np.ndarray, top: int, min_score=None, within=None, exact: bool = False
    ) -> list:
        if self.store.is_empty():
            return []
        index = self._exact_index() if exact else self._vector_index()
        allowed = None
        if within is not None:
            allowed = self.store.ids_under(_absolute(within))
            if not len(allowed):
                return []
        scores, ids = vectorindex.search(index, vector[None, :], top, allowed_ids=allowed)
        pairs = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
        if min_score is not None:
            pairs = [(s, i) for s, i in pairs if s >= min_score]
        paths = self.store.paths_for([i for _, i in pairs])
        return [Hit(rank, s, paths[i]) for rank, (s, i) in enumerate(pairs, 1) if i in paths]

    def _vector_index(self):
        """The index of the last commit, loaded once per generation (batch queries reuse it)."""
        generation = self.store.generation()
        if self._loaded_index is None or self._loaded_index[0] != generation:
            self._loaded_index = (generation, current_index(self.store)[0])
        return self._loaded_index[1]

    def _exact_index(self):
        """A flat index over the full-precision vectors, whatever the library's usual kind."""
        index = self._vector_index()
        if vectorindex.kind_of(index) == vectorindex.FLAT:
            return index
        chunks = list(self.store.vectors())
        ids = np.concatenate([c[0] for c in chunks])
        return vectorindex.build(np.concatenate([c[1] for c in chunks]), ids, vectorindex.FLAT)

    def embed_term(self, term: Term) -> np.ndarray:
        if term.text is not None:
            return self.embed_texts([term.text])[0]
        return self.embed_image(term.image)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text vectors, from the torch-free exported text tower when there is one."""
        fast = self._fast_encoder(TEXT_EXPORT)
        if fast is not None:
            return fast.encode(list(texts))
        return self.encoder.encode_texts(texts)

    def embed_image(self, path: str) -> np.ndarray:
        """An indexed, unchanged image reuses its stored vector; others are embedded now."""
        st = _stat_image(path)
        stored = self.store.vector_of(path, st.st_size, st.st_mtime_ns)
        if stored is not None:
            return stored
        from .imaging import load_image

        fast = self._fast_encoder(IMAGE_EXPORT)
        encoder = self.encoder if fast is None else fast
        try:
            image = load_image(path, min_side=encoder.image_size)
        except ImageError as exc:
            raise ClipsearchError(f"cannot read image {path}: {exc}") from exc
        if fast is not None:
            return fast.encode([image])[0]
        return encoder.encode_images(encoder.preprocess(image)[None])[0]

    def _fast_encoder(self, export: str) -> FastTextEncoder | FastImageEncoder | None:
        """The torch-free tower in `export` (TEXT_EXPORT or IMAGE_EXPORT), unless torch is
        loaded anyway or there is none.  Kept once opened: batch queries would otherwise
        open an onnxruntime session (~0.35 s) or re-read the BPE merges for every line.  The
        export of a library only changes with its model, which a library never changes."""
        if self._encoder is not None:
            return None
        if export not in self._fast:
            self._fast[export] = _fast_encoder_class(export).load(self.directory / export)
        return self._fast[export]

    # -- reporting ------------------------------------------------------------------------

    def status(self) -> dict:
        updated = self.store.meta("updated")
        index = self._vector_index()
        return {
            "library": str(self.directory),
            "roots": self.store.roots(),
            "images": self.store.count(),
            "model": self.spec.name,
            "pretrained": self.spec.pretrained,
            "dim": self.store.dim(),
            "index_type": vectorindex.kind_of(index),
            "errors": len(self.store.known_errors()),
            "size_bytes": self.store.disk_bytes(),
            "updated": _iso(float(updated)) if updated else None,
        }

    def errors(self) -> list[Skipped]:
        return sorted(self.store.known_errors().values(), key=lambda s: s.path)


def _absolute(path: os.PathLike | str) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def _check_dim(stored: int | None, made: int, spec: ModelSpec) -> None:
    """Vectors of two sizes cannot share an index: refuse before any is written or compared."""
    if stored is not None and stored != made:
        raise ClipsearchError(
            f"this library holds {stored}-dimensional vectors but {spec.label()} now makes "
            f"{made}-dimensional ones (its weights or config changed): index into a new "
            "--library, or restore the model the library was built with"
        )


def _fast_encoder_class(export: str) -> type[FastTextEncoder] | type[FastImageEncoder]:
    """Imported on demand: a text query should not pay for loading PIL, nor an image one
    for the tokenizer."""
    if export == TEXT_EXPORT:
        from .textfast import FastTextEncoder

        return FastTextEncoder
    from .visionfast import FastImageEncoder

    return FastImageEncoder


def _stat_image(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise ClipsearchError(f"cannot read image {path}: {exc.strerror}") from exc


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))
