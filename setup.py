"""Only the compiled parts (gene_ae/core/native.py loads them): the k-mer counts, the postings loop, the
segment order and the chaining of long queries; everything else is in pyproject.toml."""

from setuptools import Extension, setup

NATIVE = {
    "gene_ae.core._kmers": "gene_ae/core/kmers.c",
    "gene_ae.index._postings": "gene_ae/index/postings.c",
    "gene_ae.index._order": "gene_ae/index/order.c",
    "gene_ae.search._chain": "gene_ae/search/chain.c",
}

# -pthread: order.c bisects the halves of a split on two threads
FLAGS = {"extra_compile_args": ["-O3", "-pthread"], "extra_link_args": ["-pthread"]}

setup(ext_modules=[Extension(name, [source], **FLAGS) for name, source in NATIVE.items()])
