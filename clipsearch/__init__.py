"""clipsearch: text-to-image search over local photo folders.

The public API is imported lazily, so `import clipsearch` (and a cold `clipsearch query`)
loads neither torch nor the index machinery until a name is used.
"""

__version__ = "0.1.0"
__all__ = [
    "ClipsearchError",
    "DupeGroup",
    "Hit",
    "IndexReport",
    "Library",
    "PhotoDetails",
    "__version__",
]

_HOMES = {
    "Library": "library",
    "Hit": "results",
    "DupeGroup": "results",
    "IndexReport": "results",
    "PhotoDetails": "results",
    "ClipsearchError": "errors",
}


def __getattr__(name: str):
    """Import a public name from its module on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module 'clipsearch' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_HOMES[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
