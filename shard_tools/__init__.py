"""shard_tools: sequence files -> verified WebDataset shards, and the reference shard reader.

The reader and the version are loaded on first use (PEP 562), so a program that needs only the alphabet or the
input readers (a one-query `gene-ae search`) does not pay for tarfile, zstd and package metadata at start-up.
"""

from __future__ import annotations

__all__ = ["__version__", "iter_blocks", "load_manifest", "read_shards"]


def __getattr__(name: str):
    if name in ("iter_blocks", "load_manifest", "read_shards"):
        from shard_tools import reader

        return getattr(reader, name)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("gene-ae")
        except PackageNotFoundError:  # running from a source tree without installation
            return "0.0.0+source"
    raise AttributeError(f"module 'shard_tools' has no attribute {name!r}")
