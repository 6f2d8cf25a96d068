"""gene-ae: learn compact DNA sequence embeddings without labels, and search collections with them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gene_ae.model.encoder import Encoder

__all__ = ["Encoder"]


def __getattr__(name: str) -> Any:
    # Lazy so that the command line's argument parsing and the torch-free modules (baselines, records,
    # evaluate.config) start without importing torch; `from gene_ae import Encoder` works as usual.
    if name == "Encoder":
        from gene_ae.model.encoder import Encoder

        return Encoder
    raise AttributeError(name)
