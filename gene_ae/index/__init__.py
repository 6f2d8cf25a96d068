"""The index side: one index directory (index/directory.py) holding record vectors (faiss), window vectors,
an exact k-mer index and the sequences themselves, built from a stream of records (index/build.py)."""
