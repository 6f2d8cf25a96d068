"""gene-ae: learn compact DNA sequence embeddings without labels, and search collections with them."""

from gene_ae.encoder import Encoder

__all__ = ["Encoder"]
