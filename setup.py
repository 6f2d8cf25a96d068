"""Only the compiled part: gene_ae/index/postings.c (the k-mer postings loop); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gene_ae.index._postings", ["gene_ae/index/postings.c"], extra_compile_args=["-O3"])])
