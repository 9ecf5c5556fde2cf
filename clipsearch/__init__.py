"""clipsearch: text-to-image search over local photo folders."""

__version__ = "0.1.0"
__all__ = ["Library", "__version__"]


def __getattr__(name: str):
    """Import the API lazily so `clipsearch --help` stays fast."""
    if name == "Library":
        from .library import Library

        return Library
    raise AttributeError(name)
