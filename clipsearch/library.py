"""The Python API: `Library.open(...).index(paths)` and `.search("dog")`.

The CLI is a thin layer over this class.  It wires the steps together in data-flow order:
indexing (scan → plan → decode and embed) → storage; search terms → the encoder the model
factory picks → vector index → hits.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ClipsearchError, ImageError
from .fsutil import absolute
from .indexing import settings as root_settings
from .model.base import encode_image
from .model.factory import IMAGE, INDEX, TEXT, Encoders, ExportDirs
from .model.spec import ModelSpec, choose_model
from .results import DupeGroup, Hit, PhotoDetails
from .search.filters import NONE, Filters, check_sort, make_filters
from .search.terms import Term, combine, parse_terms
from .storage import metacolumns, photometa, vectorindex
from .storage.db import Skipped, Store
from .storage.layout import Layout, UserCache, default_home
from .storage.lock import write_lock
from .storage.vectorfile import current_index, drop_stale_files, save_index

if TYPE_CHECKING:
    from .indexing.distributed import RayOptions
    from .indexing.run import Progress
    from .photos.thumbnails import ThumbnailCache
    from .results import IndexReport

# Cosine above which two photos count as near-duplicates for CLIP ViT-B models (see README).
DUPE_THRESHOLD = 0.95


class Library:
    """A photo library on disk and the model that embeds it."""

    def __init__(
        self,
        store: Store,
        spec: ModelSpec,
        device: str,
        batch_size: int | None,
        *,
        backend: str = "auto",
        precision: str = "auto",
    ):
        self.store = store
        self.spec = spec
        self.device = device
        self.batch_size = batch_size
        self.encoders = Encoders(
            spec,
            device,
            self._exports,
            on_load=self._adopt,
            index_backend=backend,
            precision=precision,
        )
        self._loaded_index: tuple[int, object] | None = None
        self._loaded_columns: tuple[tuple, metacolumns.Columns] | None = None

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
        backend: str = "auto",
        precision: str = "auto",
    ) -> Library:
        """`backend` (auto, torch, onnxruntime) and `precision` (auto, fp32, bf16, fp16, int8)
        choose what runs the image tower when indexing; auto picks what measured fastest
        with full fidelity (see `model.backend`)."""
        store = Store.open(_library_dir(directory), create=create)
        try:
            spec = choose_model(store.model_spec(), model, pretrained)
            return cls(store, spec, device, batch_size, backend=backend, precision=precision)
        except ClipsearchError:
            store.close()
            raise

    @staticmethod
    def repair(
        directory: os.PathLike | str | None = None,
        *,
        wait: bool = True,
        on_wait: Callable[[str], None] | None = None,
    ) -> list[str]:
        """Check a library and fix what is damaged (one line per thing done).  A static
        method, because a damaged library may not open."""
        from .storage.repair import repair_library

        return repair_library(_library_dir(directory), wait=wait, on_wait=on_wait)

    def close(self) -> None:
        self.encoders.finish(measure=False)
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def directory(self) -> Path:
        return self.store.directory

    @property
    def layout(self) -> Layout:
        """Where each file of this library lives."""
        return self.store.layout

    # -- the model ------------------------------------------------------------------------

    def _exports(self) -> ExportDirs:
        """Where this library's model towers are: in the user cache, the folder named after the
        checkpoint's hash (a checkpoint file is re-checked by size and mtime, one stat: weights
        replaced under the same name must not be served by the old export), else the one the
        library recorded (a tag, or weights not on disk now); else the library's own `text/`
        and `image/` of versions before the cache, if there."""
        from .model.exportcache import model_key

        cache = UserCache.default()
        recorded = self.store.meta("export")
        layout = self.layout
        if not recorded and (layout.text_export.exists() or layout.image_export.exists()):
            return ExportDirs(layout.text_export, layout.image_export, None, cache.backend_choices)
        key = model_key(self.spec, cache) if self.spec.is_file or not recorded else recorded
        key = key or recorded
        if key is None:  # the weights are not on disk yet: the library's own folders
            return ExportDirs(layout.text_export, layout.image_export)
        return ExportDirs(
            cache.text_export(key), cache.image_export(key), key, cache.backend_choices
        )

    def _adopt(self, encoder) -> None:
        """A freshly loaded model must make vectors of the library's size; a new library
        records it, and which export of the user cache it uses, so later runs and queries
        use the same ones."""
        _check_dim(self.store.dim(), encoder.dim, self.spec)
        if self.store.model_spec() is None:
            self.store.record_model(self.spec, encoder.dim)
        key = self.encoders.exports.key
        if key and self.store.meta("export") != key:
            self.store.set_meta(export=key)

    def _check_model_unchanged(self) -> None:
        """Under the write lock, the model recorded now must be the one this run chose: two
        first runs on a new library, racing with different models, would mix two models'
        vectors (the loser only finds out once it holds the lock)."""
        recorded = self.store.model_spec()
        if recorded is not None and recorded != self.spec:
            raise ClipsearchError(
                f"another run has just built this library with {recorded.label()}, not "
                f"{self.spec.label()}: run again without --model/--pretrained to use its "
                "model, or use another --library"
            )

    def use_encoder(self, encoder) -> None:
        """Swap in another encoder with the same interface (tests, custom models)."""
        self.encoders.use(encoder)
        if self.store.model_spec() is None:
            self.store.record_model(self.spec, encoder.dim)

    # -- indexing -------------------------------------------------------------------------

    def index(
        self,
        paths: Sequence[os.PathLike | str] = (),
        *,
        excludes: Sequence[str] | None = None,
        default_excludes: bool | None = None,
        raw_too: bool | None = None,
        max_megapixels: float | str | None = None,
        progress: Progress | None = None,
        wait: bool = True,
        on_wait: Callable[[str], None] | None = None,
        date_fallback: str = "none",
        remove_offline: bool = False,
        retry_errors: bool = False,
        ray: RayOptions | None = None,
        follow_links: bool = False,
    ) -> IndexReport:
        """Bring the library up to date with `paths` (or with every known root).

        A root that is offline (missing, empty while photos are indexed under it, or on
        another device than recorded: see indexing/roots.py) is left alone, its photos kept
        and listed in `report.offline`; remove_offline=True forgets such roots instead (their
        vectors retained, see `purge`).  A new file whose size and fingerprint match a
        retained vector, or a photo indexed under another root, reuses that vector.

        excludes, default_excludes, raw_too and max_megapixels (a number, 'auto' or 'none')
        are remembered with each root of the run; None means "as remembered" (else the
        default).  A changed pixel limit retries the photos the old one skipped;
        retry_errors=True retries every file that failed before.

        date_fallback="mtime" gives photos without a recorded capture time their file's
        modification time (by default they have none: an mtime is often a copy's date).
        `ray` embeds on a Ray cluster (see indexing/distributed.py); the rest runs here.
        Symlinked folders are followed only within the roots unless follow_links (never
        into /proc, /sys or /dev); the library's own folder is never indexed."""
        from .indexing import scan as scanner
        from .indexing.metadata import DATE_FALLBACKS
        from .indexing.run import note_stage, run_index

        if date_fallback not in DATE_FALLBACKS:
            raise ClipsearchError(f"--date-fallback takes none or mtime, not {date_fallback!r}")
        if ray:
            from .indexing.distributed import preflight

            preflight(ray)  # before any work: a missing extra or a dead head, said at once

        new = root_settings.given(excludes, default_excludes, raw_too, max_megapixels)
        if new.get("exclude"):
            scanner.check_excludes(new["exclude"])
        roots = self._targets(paths)
        with self.store.saving(), write_lock(self.directory, wait=wait, on_wait=on_wait):
            note_stage(progress, "looking for new and changed photos")
            self._check_model_unchanged()
            offline = self.offline_roots(roots)
            online = scanner.outermost(r for r in roots if r not in offline)
            removed_offline = self._remove_offline(offline) if remove_offline else 0
            settings, notes = self._apply_settings(online, new, retry_errors)
            fence = scanner.Fence.for_library(online, self.directory, follow_links)
            scan = scanner.scan_each(online, settings, fence)
            limits = root_settings.PixelLimits(
                tuple(
                    (r, root_settings.max_pixels(s["max_megapixels"])) for r, s in settings.items()
                ),
                root_settings.max_pixels("auto"),
            )
            embedder = self._ray_embedder(ray, limits) if ray else None
            report = run_index(
                self.store,
                online,
                scan,
                lambda: self.encoders.get(INDEX),
                batch_size=self.batch_size,
                max_pixels=limits,
                progress=progress,
                date_fallback=date_fallback,
                offline=list(offline),
                embedder=embedder,
            )
            report.notes = notes
            report.removed += removed_offline
            if not remove_offline:
                report.offline = [
                    {"root": r, "reason": why, "photos": self.store.count_under(r)}
                    for r, why in offline.items()
                ]
            if embedder is not None and embedder.run is not None:
                report.ray = embedder.run.as_dict()
            try:
                self._refresh_vector_file()
                self._finish_model(not report.interrupted, record=embedder is None)
            except KeyboardInterrupt:  # the work is committed; the cache is rebuilt on demand
                report.interrupted = True
        choice = self.encoders.choice if embedder is None else None
        report.backend = choice.as_dict() if choice else None
        return report

    def _apply_settings(
        self, roots: Sequence[str], new: dict, retry_errors: bool
    ) -> tuple[dict[str, dict], list[str]]:
        """Record each root with the settings given now; return every root's settings in
        force and a note per replaced one.  Photos skipped by a pixel limit that changed
        (or every failure, with retry_errors) lose their record, so they are tried again."""
        from .indexing.roots import device_of

        stored = {r.path: r.settings for r in self.store.root_records()}
        in_force, notes = {}, []
        self.store.begin()
        for root in roots:
            old = stored.get(root, {})
            if root in stored:
                notes += root_settings.changes(root, old, new)
            before = root_settings.effective(old)["max_megapixels"]
            self.store.add_root(root, device_of(root))
            self.store.set_root_settings(root, {**old, **new})
            in_force[root] = root_settings.effective({**old, **new})
            if retry_errors:
                self.store.forget_errors_under(root)
            elif in_force[root]["max_megapixels"] != before:
                self.store.forget_errors_under(root, root_settings.PIXEL_LIMIT_MARK)
        self.store.commit()
        return in_force, notes

    def _targets(self, paths: Sequence[os.PathLike | str]) -> list[str]:
        """The roots a run covers: those named (a known root may be offline), else all."""
        from .indexing import scan as scanner

        if not paths:
            return self._known_roots()
        known = set(self.store.roots())
        targets = []
        for p in paths:
            path = absolute(p)
            targets.append(path if path in known else scanner.normalise_root(path))
        return targets

    def _ray_embedder(self, options: RayOptions, max_pixels):
        """The cluster's workers embed on `self.device`; the driver's own copy of the model
        (it checks the vector size and exports the query towers) loads on the CPU."""
        from .indexing.distributed import RayEmbedder

        self.encoders.device = "cpu"
        return RayEmbedder(options, self.spec, self.device, self.batch_size, max_pixels)

    def _finish_model(self, measure: bool, record: bool = True) -> None:
        """Wait for a tower export the run started, and note which backend embedded (not
        `record`ed when Ray workers embedded: the driver's model only checked and exported)."""
        self.encoders.finish(measure)
        choice = self.encoders.choice
        if choice is not None and record:
            self.store.set_meta(index_backend=f"{choice.label()} ({choice.reason})")

    def _known_roots(self) -> list[str]:
        roots = self.store.roots()
        if not roots:
            raise ClipsearchError(
                "nothing to index: give a folder, e.g. `clipsearch index ~/Photos`"
            )
        return roots

    def offline_roots(self, roots: Sequence[str] | None = None) -> dict[str, str]:
        """The known roots (of `roots`, default all) that are offline, with the reason."""
        from .indexing.roots import offline_reason

        wanted = None if roots is None else set(roots)
        found = {}
        for root in self.store.root_records():
            if wanted is not None and root.path not in wanted:
                continue
            holds = root.path  # asked at once, inside this iteration
            reason = offline_reason(
                holds,
                root.device,
                lambda: self.store.count_under(holds) > 0,  # noqa: B023
            )
            if reason is not None:
                found[root.path] = reason
        return found

    def _remove_offline(self, offline: dict[str, str]) -> int:
        self.store.begin()
        removed = sum(self.store.forget_root(root) for root in offline)
        self.store.commit()
        return removed

    def _refresh_vector_file(self) -> None:
        """Bring the caches (FAISS file, metadata columns) up to the last commit; a no-op
        when nothing changed.  Called after the commit: a full disk here loses nothing, so
        it is not "could not save the library" (every row is in SQLite, and the next run or
        query rebuilds the caches from it)."""
        try:
            index, up_to_date = current_index(self.store)
            if up_to_date:
                drop_stale_files(self.store)  # a killed run may have saved but not cleaned up
            else:
                save_index(self.store, index)
            metacolumns.refresh(self.store)
        except OSError as exc:
            raise cache_not_saved(exc, self.directory) from exc

    def forget(self, directory: os.PathLike | str, *, wait: bool = True, on_wait=None) -> int:
        """Drop a root folder and everything indexed below it."""
        path = absolute(directory)
        if path not in self.store.roots():
            roots = ", ".join(self.store.roots()) or "none"
            raise ClipsearchError(f"{directory} is not an indexed root (roots: {roots})")
        with self.store.saving(), write_lock(self.directory, wait=wait, on_wait=on_wait):
            self.store.begin()
            removed = self.store.forget_root(path)
            self.store.commit()
            self._refresh_vector_file()
        return removed

    def move(
        self, old: os.PathLike | str, new: os.PathLike | str, *, wait: bool = True, on_wait=None
    ) -> int:
        """Re-point a root, or a folder below one, at the place its photos live now (the
        NAS path of a laptop folder, a renamed root): ids and vectors are kept, so nothing
        is embedded again.  `new` must be a folder; outside every root it becomes one.
        Returns how many photos were re-pointed."""
        from .indexing.roots import device_of
        from .indexing.scan import normalise_root

        source, target = absolute(old), normalise_root(new)
        roots = self.store.roots()
        if not any(source == r or source.startswith(os.path.join(r, "")) for r in roots):
            listed = ", ".join(roots) or "none"
            raise ClipsearchError(
                f"{old} is not an indexed root nor a folder below one (roots: {listed})"
            )
        if source == target:
            moved = self.store.count_under(source)
        with self.store.saving(), write_lock(self.directory, wait=wait, on_wait=on_wait):
            self.store.begin()
            if source != target:
                moved = self.store.move_folder(source, target)
            if source in roots:
                self.store.rename_root(source, target, device_of(target))
            elif not any(target == r or target.startswith(os.path.join(r, "")) for r in roots):
                self.store.add_root(target, device_of(target))
            self.store.commit()
            self._refresh_vector_file()
        return moved

    def purge(self, *, wait: bool = True, on_wait=None) -> int:
        """Forget the vectors kept for removed files now, not after the retention period;
        returns how many went."""
        with self.store.saving(), write_lock(self.directory, wait=wait, on_wait=on_wait):
            self.store.begin()
            gone = self.store.expire_retained(days=-1)
            self.store.commit()
        return gone

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
        vectors: Sequence[tuple[float, np.ndarray]] = (),
        after: str | None = None,
        before: str | None = None,
        near: str | None = None,
        km: float | str | None = None,
        camera: str | None = None,
        sort: str = "score",
        filters: Filters | None = None,
        as_text: bool = False,
    ) -> list[Hit]:
        """Best matches for the combined query terms, best first (as_text: every term is
        text, even one naming an image file; the rules are in search/terms.py).

        `vectors` are extra (weight, unit vector) terms, e.g. from `embed_image_data`; with
        them the text and path terms may be left out.

        after/before ('2024', '2024-06', '2024-06-15' or an ISO time, both inclusive),
        near ('Lisbon' or 'LAT,LON') within km (default 25) and camera (a case-insensitive
        part of make and model) keep only the photos that match, before the top-K cut.
        With filters and no terms, the matching photos are listed by date.  sort: 'score',
        'date' (oldest first) or '-date'.  `filters` passes ready-made Filters instead."""
        _check_options(top, min_score, within)
        check_sort(sort)
        filters = _filters(filters, after, before, near, km, camera)
        if not (terms or add or sub or vectors) and filters.active:
            if min_score is not None:
                raise ClipsearchError("--min-score needs query terms to score against")
            return self.listing(filters, top=top, within=within, newest_first=sort == "-date")
        wanted = terms or add or sub or not vectors
        parsed = parse_terms(terms, add, sub, as_text=as_text) if wanted else []
        if self.store.is_empty():
            return []
        vector = combine(parsed, self.embed_term, vectors)
        return _sorted(self.search_vector(vector, top, min_score, within, exact, filters), sort)

    def similar(
        self,
        image: str,
        *,
        top: int = 10,
        min_score=None,
        within=None,
        sort: str = "score",
        filters: Filters | None = None,
        **filter_options,
    ) -> list[Hit]:
        """Photos that look like `image` (indexed or not), without the image itself.
        Takes the filters and sort of `search`."""
        path = absolute(image)
        if not os.path.isfile(path):
            raise ClipsearchError(f"no such image file: {image}")
        _check_options(top, min_score, within)
        check_sort(sort)
        filters = _filters(filters, **filter_options)
        if self.store.is_empty():
            return []
        hits = self.search_vector(
            self.embed_image(path), top + 1, min_score, within, False, filters
        )
        others = [h for h in hits if h.path != path][:top]
        ranked = [dataclasses.replace(h, rank=rank) for rank, h in enumerate(others, 1)]
        return _sorted(ranked, sort)

    def listing(
        self, filters: Filters, *, top: int = 10, within=None, newest_first: bool = False
    ) -> list[Hit]:
        """The photos that pass `filters`, by capture time (undated ones last), no scores."""
        columns = self._columns()
        keep = columns.select(filters)
        ids, taken = columns.ids[keep], columns.taken[keep]
        if within is not None:
            inside = np.isin(ids, self.store.ids_under(absolute(within)))
            ids, taken = ids[inside], taken[inside]
        order = metacolumns.by_date(ids, taken, newest_first)[:top]
        return self._hits([(None, int(i)) for i in order])

    def details(self, paths: Sequence[os.PathLike | str]) -> dict[str, PhotoDetails]:
        """Capture time, place, camera... of indexed photos, by path (absent: not indexed).
        The one way other views (web, dupes) get what `search` puts on each Hit."""
        wanted = [absolute(p) for p in paths]
        ids = photometa.ids_for_paths(self.store.conn, wanted)
        found = photometa.details(self.store.conn, list(ids.values()))
        return {p: found.get(i, photometa.NO_DETAILS) for p, i in ids.items()}

    def duplicates(self, within=None, threshold: float = DUPE_THRESHOLD) -> list[DupeGroup]:
        """Groups of near-duplicate photos, likeliest first."""
        from .search.dupes import find_groups

        ids = self.store.ids() if within is None else self.store.ids_under(absolute(within))
        if not len(ids):
            return []
        found_ids, vectors = self.store.all_vectors(ids)
        if not len(found_ids):
            return []
        paths = self.store.paths_for(found_ids)
        groups = find_groups(vectors, [paths[int(i)] for i in found_ids], threshold)
        details = self.details([p for g in groups for p in g.paths]) if groups else {}
        for group in groups:
            group.members = [_member(p, details.get(p, photometa.NO_DETAILS)) for p in group.paths]
            group.keeper = _keeper(group.members)
        return groups

    def thumbnails(self, *, sharp: bool = False) -> ThumbnailCache:
        """The thumbnail cache; sharp: twice the usual side, for pages that carry their
        thumbnails (a 200-pixel card at 2x density)."""
        from .photos.thumbnails import THUMB_SIDE, ThumbnailCache

        if sharp:
            return ThumbnailCache(self.store.layout.thumbnails / "2x", side=2 * THUMB_SIDE)
        return ThumbnailCache(self.store.layout.thumbnails)

    def search_vector(
        self,
        vector: np.ndarray,
        top: int,
        min_score=None,
        within=None,
        exact: bool = False,
        filters: Filters = NONE,
    ) -> list[Hit]:
        """Top matches among the photos under `within` that pass `filters`: the allowed ids
        go into the vector search, so the top-K cut counts only photos that qualify (on the
        approximate index too, which probes more lists as the allowed share shrinks)."""
        if self.store.is_empty():
            return []
        _check_query(vector, self.store.dim())
        index = self._exact_index() if exact else self._vector_index()
        allowed = self._allowed(within, filters)
        if allowed is not None and not len(allowed):
            return []
        scores, ids = vectorindex.search(index, vector[None, :], top, allowed_ids=allowed)
        if not _cosines(scores, ids):  # checked before any answer is shown
            self._rebuilt_after_damage()
            index = self._exact_index() if exact else self._vector_index()
            scores, ids = vectorindex.search(index, vector[None, :], top, allowed_ids=allowed)
        pairs = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
        if min_score is not None:
            pairs = [(s, i) for s, i in pairs if s >= min_score]
        return self._hits(pairs)

    def _allowed(self, within, filters: Filters) -> np.ndarray | None:
        allowed = None
        if within is not None:
            allowed = self.store.ids_under(absolute(within))
        if filters.active:
            columns = self._columns()
            matched = columns.ids[columns.select(filters)]
            allowed = matched if allowed is None else np.intersect1d(allowed, matched)
        return allowed

    def _columns(self) -> metacolumns.Columns:
        """Photo metadata as columns, loaded once per commit (batch queries reuse them)."""
        key = (self.store.generation(), self.store.meta("photo_meta_version"))
        if self._loaded_columns is None or self._loaded_columns[0] != key:
            self._loaded_columns = (key, metacolumns.load(self.store))
        return self._loaded_columns[1]

    def _hits(self, pairs: list[tuple[float | None, int]]) -> list[Hit]:
        """Hits with their paths and metadata, in the order given, ranked from 1."""
        ids = [i for _, i in pairs]
        paths = self.store.paths_for(ids)
        found = photometa.details(self.store.conn, ids)
        away = tuple(os.path.join(root, "") for root in self.offline_roots()) if ids else ()
        hits = []
        for score, i in pairs:
            if i not in paths:
                continue
            d = found.get(i, photometa.NO_DETAILS)
            hit = Hit(len(hits) + 1, score, paths[i], d.taken, d.lat, d.lon, d.place, d.camera)
            if away and paths[i].startswith(away):
                hit = dataclasses.replace(hit, available=False)
            hits.append(hit)
        return hits

    def _vector_index(self, verify: bool = False):
        """The index of the last commit, loaded once per generation (batch queries reuse it);
        `verify` checks the file's checksum whatever its size."""
        generation = self.store.generation()
        if verify or self._loaded_index is None or self._loaded_index[0] != generation:
            self._loaded_index = (generation, current_index(self.store, verify=verify)[0])
        return self._loaded_index[1]

    def _rebuilt_after_damage(self):
        """Scores no cosine can have mean the loaded file is damaged: rebuild from SQLite."""
        from .storage.vectorfile import rebuilt_after_damage

        self._loaded_index = (self.store.generation(), rebuilt_after_damage(self.store))
        return self._loaded_index[1]

    def _exact_index(self):
        """A flat index over the full-precision vectors, whatever the library's usual kind."""
        index = self._vector_index()
        if vectorindex.kind_of(index) == vectorindex.FLAT:
            return index
        ids, vectors = self.store.all_vectors()
        return vectorindex.build(vectors, ids, vectorindex.FLAT)

    def embed_term(self, term: Term) -> np.ndarray:
        if term.text is not None:
            return self.embed_texts([term.text])[0]
        return self.embed_image(term.image)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text vectors, from whichever encoder the model factory picks for text."""
        vectors = self.encoders.get(TEXT).encode_texts(list(texts))
        for vector in vectors:
            _check_query(vector, self.store.dim())
        return vectors

    def embed_image(self, path: str) -> np.ndarray:
        """An indexed, unchanged image reuses its stored vector; others are embedded now."""
        st = _stat_image(path)
        stored = self.store.vector_of(path, st.st_size, st.st_mtime_ns)
        if stored is not None:
            return stored
        from .photos.decode import default_max_pixels, load_image

        encoder = self.encoders.get(IMAGE)
        try:
            image = load_image(path, min_side=encoder.image_size, max_pixels=default_max_pixels())
        except ImageError as exc:
            raise ClipsearchError(f"cannot read image {path}: {exc}") from exc
        return encode_image(encoder, image)

    def embed_image_data(self, data: bytes) -> np.ndarray:
        """A photo held in memory (one dropped on `clipsearch serve`'s page): decoded and
        embedded without ever being written to disk."""
        from .photos.decode import default_max_pixels, load_image_data

        encoder = self.encoders.get(IMAGE)
        try:
            image = load_image_data(
                data, min_side=encoder.image_size, max_pixels=default_max_pixels()
            )
        except ImageError as exc:
            raise ClipsearchError(f"cannot read that image: {exc}") from exc
        return encode_image(encoder, image)

    def evaluate(
        self, captions: os.PathLike | str, images: os.PathLike | str | None = None
    ) -> dict:
        """Recall@1/5/10 and median rank of this library's model on a captioned set (a
        Flickr8k-style `image,caption` CSV or a COCO captions JSON), text→image and
        image→text, so a model can be judged on your own photos before you choose it."""
        from .evaluate import captions as captionsets
        from .evaluate import metrics, run

        data = captionsets.read_captions(captions, images)
        vectors = run.image_vectors(
            data.images, run.stored_lookup(self.store), lambda: self.encoders.get(INDEX)
        )
        texts = run.text_vectors(data.captions, self.embed_texts)
        return {
            "model": self.spec.name,
            "pretrained": self.spec.pretrained,
            **metrics.retrieval_metrics(texts, vectors, data.image_of),
        }

    # -- photos by id ---------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Moves on with every commit that changes vectors: a cache key for derived views."""
        return self.store.generation()

    def roots(self) -> list[str]:
        """The folders indexed so far."""
        return self.store.roots()

    def photo_ids(self, paths: Sequence[str]) -> dict[str, int]:
        """The library ids of the indexed `paths` (others are left out).  Ids name photos
        where a path must not be trusted, such as URLs of `clipsearch serve`."""
        return self.store.ids_for(list(paths))

    def indexed_path(self, photo_id: int) -> str | None:
        """The path of photo `photo_id`, if a regular file there is still the version that
        was indexed (same size and mtime); else None.  A file swapped for a symlink to
        something else, edited or removed since is not handed out under the old id."""
        found = self.store.file_of(photo_id)
        if found is None:
            return None
        path, size, mtime_ns = found
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            return None
        return path

    # -- reporting ------------------------------------------------------------------------

    def status(self) -> dict:
        updated = self.store.meta("updated")
        index = self._vector_index(verify=True)
        return {
            "library": str(self.directory),
            "roots": self.store.roots(),
            "offline": self.offline_roots(),
            "settings": {r.path: r.settings for r in self.store.root_records() if r.settings},
            "images": self.store.count(),
            "retained": self.store.count_retained(),
            "model": self.spec.name,
            "pretrained": self.spec.pretrained,
            "dim": self.store.dim(),
            "index_type": vectorindex.kind_of(index),
            "index_backend": self.store.meta("index_backend"),
            "export": self.store.meta("export") or "library folder",
            "errors": len(self.store.known_errors()),
            "size_bytes": self.store.disk_bytes(),
            "updated": _iso(float(updated)) if updated else None,
            **photometa.summary(self.store.conn),
        }

    def errors(self) -> list[Skipped]:
        return sorted(self.store.known_errors().values(), key=lambda s: s.path)


# Rounding lets a float32 cosine of unit vectors stray this far past +-1, no further.
_COSINE_SLACK = 1e-3


def _cosines(scores: np.ndarray, ids: np.ndarray) -> bool:
    """True when every returned score could be a cosine: finite and within [-1, 1] (plus
    rounding).  A damaged vector file gives others (7.4e22 was seen) and must not rank."""
    found = scores[ids >= 0]
    return bool(np.all(np.isfinite(found)) and np.all(np.abs(found) <= 1 + _COSINE_SLACK))


def _library_dir(directory: os.PathLike | str | None) -> Path:
    """The folder named (`~` expanded, as a shell would have), else the default one."""
    return Path(directory).expanduser() if directory else default_home()


def _member(path: str, d: PhotoDetails) -> dict:
    """What a person weighs to pick one copy: resolution, size on disk, format, date."""
    try:
        size = os.stat(path).st_size
    except OSError:
        size = None
    fmt = os.path.splitext(path)[1].lstrip(".").upper() or None
    return {
        "path": path,
        "width": d.width,
        "height": d.height,
        "bytes": size,
        "format": fmt,
        "taken": d.taken,
    }


def _keeper(members: list[dict]) -> int:
    """results.KEEPER_RULE: most pixels, then largest file, then earliest date, then the
    shortest path (the copy least buried in folders)."""

    def rank(k: int) -> tuple:
        m = members[k]
        pixels = (m["width"] or 0) * (m["height"] or 0)
        taken = m["taken"][:19] if m["taken"] else "9999"
        return (-pixels, -(m["bytes"] or 0), taken, len(m["path"]), m["path"])

    return min(range(len(members)), key=rank)


def _check_options(top: int, min_score: float | None, within) -> None:
    """Options that would otherwise answer silently: --min-score nan matched nothing,
    --in FILE found nothing under a file."""
    if top < 1:
        raise ClipsearchError(f"--top must be at least 1, not {top}")
    if min_score is not None and not math.isfinite(min_score):
        raise ClipsearchError(f"--min-score takes a number (a cosine, -1 to 1), not {min_score}")
    if within is not None:
        folder = absolute(within)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ClipsearchError(
                f"--in takes a folder, and {folder} is a file: "
                f"use --in {os.path.dirname(folder)}, or `clipsearch similar {folder}`"
            )


def _filters(
    filters: Filters | None,
    after: str | None = None,
    before: str | None = None,
    near: str | None = None,
    km: float | str | None = None,
    camera: str | None = None,
) -> Filters:
    if filters is None:
        return make_filters(after=after, before=before, near=near, km=km, camera=camera)
    if any(v is not None for v in (after, before, near, km, camera)):
        raise ClipsearchError("pass either filters= or after/before/near/km/camera, not both")
    return filters


def _sorted(hits: list[Hit], sort: str) -> list[Hit]:
    """Hits re-ordered by capture time (undated last), keeping their relevance ranks."""
    if sort == "score":
        return hits
    dated = [h for h in hits if h.taken]
    dated.sort(key=lambda h: h.taken[:19], reverse=sort == "-date")
    return dated + [h for h in hits if not h.taken]


def _check_query(vector: np.ndarray, dim: int | None) -> None:
    """A query vector the library can use: its size, and finite. An export of another model
    (a library.db copied from another library) was an AssertionError in FAISS; a damaged
    export made NaN vectors, and every query silently found nothing."""
    vector = np.asarray(vector)
    if dim is not None and vector.shape[-1] != dim:
        raise ClipsearchError(
            f"the model made {vector.shape[-1]}-dimensional query vectors but this library "
            f"holds {dim}-dimensional ones (was library.db copied from another library?): "
            "run `clipsearch repair`, or use the library's own folder"
        )
    if not np.isfinite(vector).all():
        raise ClipsearchError(
            "the model made an invalid query vector (its exported files are damaged): "
            "run `clipsearch repair`"
        )


def _check_dim(stored: int | None, made: int, spec: ModelSpec) -> None:
    """Vectors of two sizes cannot share an index: refuse before any is written or compared."""
    if stored is not None and stored != made:
        raise ClipsearchError(
            f"this library holds {stored}-dimensional vectors but {spec.label()} now makes "
            f"{made}-dimensional ones (its weights or config changed): index into a new "
            "--library, or restore the model the library was built with"
        )


def _stat_image(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise ClipsearchError(f"cannot read image {path}: {exc.strerror}") from exc


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def cache_not_saved(exc: OSError, directory: Path) -> ClipsearchError:
    """A failed write of the vector index file, after the database committed."""
    reason = exc.strerror or str(exc)
    return ClipsearchError(
        f"the photos are stored in the library at {directory}, but its vector index file "
        f"could not be written ({reason}); it will be rebuilt from the database on the next "
        "run: free some disk space or make the folder writable"
    )
