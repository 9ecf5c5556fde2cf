"""The models we recommend, with the facts a user chooses by: what `clipsearch models` shows.

Sizes are the parameter count × 4 bytes (float32 safetensors, what open_clip downloads for
these tags), counted with `python -m clipsearch.model.catalog --count`: open_clip 3.3.0 builds
each architecture on torch's meta device (no weights, no network); XLM-R's text tower, whose
config open_clip fetches from the hub, was counted from its published config.  `img_s` is
`end_to_end_ips` of `clipsearch bench index --synthetic 100 --megapixels 12 --backfill 100
--model NAME --json`, each model run alone on this project's 2-vCPU machine between 06:00 and
07:00 UTC on 7 December 2026, with random weights (speed does not depend on weight values) and
bench's offline tokenizer stand-ins; None where not measured yet.  `recall` is published
quality with its source: Immich's model table reports Crossmodal-3600 text↔image recall
(mean of R@1/5/10 over 36 languages).  Nothing here imports torch.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass

IMMICH = "Immich model table, Crossmodal-3600 mean recall"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    pretrained: str
    languages: str
    dim: int
    download_mb: int
    img_s: float | None
    recall: str | None
    recall_source: str | None
    good_for: str

    def as_dict(self) -> dict:
        return asdict(self)


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        "ViT-B-32",
        "laion2b_s34b_b79k",
        "English",
        512,
        605,
        16.1,
        "68.8%",
        IMMICH,
        "the default: fastest to index on a small CPU, torch-free queries",
    ),
    CatalogEntry(
        "ViT-B-32-SigLIP2-256",
        "webli",
        "multilingual",
        768,
        1507,
        12.7,
        "73.2%",
        IMMICH,
        "better recall and many languages; 2.5x the download, 0.8x the indexing speed",
    ),
    CatalogEntry(
        "ViT-B-16-SigLIP2",
        "webli",
        "multilingual",
        768,
        1501,
        None,
        "75.2%",
        IMMICH,
        "best published recall here; 16-pixel patches: 4x the image tokens of ViT-B-32",
    ),
    CatalogEntry(
        "xlm-roberta-base-ViT-B-32",
        "laion5b_s13b_b90k",
        "multilingual (XLM-R)",
        512,
        1464,
        14.6,
        None,
        None,
        "queries in 100 languages; needs the transformers package",
    ),
    CatalogEntry(
        "MobileCLIP2-S0",
        "dfndr2b",
        "English",
        512,
        300,
        7.7,
        None,
        None,
        "smallest download; a phone-sized image tower, slower than ViT-B-32 on this CPU",
    ),
)


def entries() -> list[CatalogEntry]:
    return list(CATALOG)


def suggest(name: str, known: list[str], n: int = 3) -> list[str]:
    """The closest known model names, for an unknown --model (case ignored)."""
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[c] for c in close]


def _count() -> None:  # pragma: no cover - a maintenance command, heavy
    """Print name, parameter count, float32 MB and embedding size of each catalog model."""
    import open_clip

    for entry in CATALOG:
        try:
            model = open_clip.create_model(entry.name, pretrained=None, device="meta")
        except Exception as exc:  # e.g. transformers missing for the XLM-R text tower
            print(entry.name, "cannot build:", exc)
            continue
        params = sum(p.numel() for p in model.parameters())
        params += sum(b.numel() for b in model.buffers())
        dim = open_clip.get_model_config(entry.name)["embed_dim"]
        print(entry.name, params, round(params * 4 / 1e6), dim)


if __name__ == "__main__":  # pragma: no cover
    import sys

    if "--count" in sys.argv:
        _count()
