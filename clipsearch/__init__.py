"""clipsearch: text-to-image search over local photo folders."""

__version__ = "0.1.0"
