"""shard_tools: sequence files -> verified WebDataset shards, and the reference shard reader."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from shard_tools.reader import iter_blocks, load_manifest, read_shards

try:
    __version__ = version("gene-ae")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

__all__ = ["__version__", "iter_blocks", "load_manifest", "read_shards"]
