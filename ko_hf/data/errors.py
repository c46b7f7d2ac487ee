"""The one error of :mod:`ko_hf.data`: every bad dataset input raises :class:`DatasetError`."""

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """Bad dataset input (unknown name, missing path/column, empty split, offline Hub, ...)."""
