"""Vectors in faiss: build the index of a matrix of L2-normalised vectors and search it by inner product.

Exact search (flat) up to FLAT_MAX vectors per shard; an inverted-file index (IVF) above, tuned on real-data
vectors at 10^6 in benchmarks/search_bench.py (docs/BENCHMARKS.md). HNSW stays available (--index-kind hnsw).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

# Chosen at 10^6 genes (13 shards of ~80,000 records, benchmarks/scale_choices.py, 150 val queries a divergence):
# flat scans of the record and window vectors were ~40 % of a search; IVF on both kept val recall@1 (1.00 / 1.00
# / 0.95 at 10 / 20 / 30 %, as exact) at 0.56x the time a query. Below this a flat scan costs a few ms and is exact.
FLAT_MAX = 20_000
# Coded vectors (pq64, signs: 64 bytes a record) are scanned whole up to CODED_FLAT_MAX a shard (a shard holds 128 Mi
# bases: ~9 x 10^4 genes). An IVF's coarse centroids are float32 at the vector's dimension, 4 sqrt(n) x 512 x 4
# bytes, 40 % of a 10^5-gene shard's codes; the default search reads no vectors, so they were 4 % of its index for
# nothing. On SILVA's val split (100,000 genes, 200 queries a divergence): the default index 65.1 -> 62.7 MiB, its
# hits the same; the vector-first index 36.4 -> 34.0 MiB, recall@1 0.92 / 0.85 / 0.37 -> 0.93 / 0.86 / 0.40 at
# 10 / 20 / 30 % (every code scanned, not 64 lists of 1,264), 127.5 -> 148.8 ms a query (docs/BENCHMARKS.md).
CODED_FLAT_MAX = 1 << 18
# How each vector is stored in faiss: float32 as computed; float16 (half, near lossless); 8 bits a value (faiss
# scalar quantizer over SQ8_RANGE, a quarter: the same recall as float32 at 10^5 genes, 0.75x the index and 0.87x
# the time a query); pq64, the default (the default search reads no vectors: on 10^5 real SILVA genes it changed
# no hit and took the index to 0.79x of sq8's); signs, 1 bit a value (build_signs: 64 bytes for the 512-value
# vector), the code a model trained with model.vector_bits = 1 is trained as. docs/BENCHMARKS.md has what each
# costs in recall.
CODECS = {"f32": None, "f16": "QT_fp16", "sq8": "QT_8bit", "pq64": "PQ", "signs": "signs"}
# pq64: faiss product quantisation, PQ_BYTES sub-vectors of 8 bits (64 bytes a vector whatever its dimension;
# issue 33's equal-bytes budget; fewer where the dimension does not divide). Approximate: its codebooks are
# trained on the index's own vectors.
PQ_BYTES = 64
PQ_CODES = 256  # codes a sub-vector (8 bits): no fewer vectors can train them
PQ_MIN = PQ_CODES * 39  # vectors to train them well (faiss wants 39 a centroid)
# k-means rounds training each sub-vector's codes (faiss: 25): 10 built SILVA's 100,000-gene val split in 84.6 s,
# not 88.9, its vector-only recall@1 0.82 / 0.56 / 0.14 against 0.78 / 0.52 / 0.12; on the test split, once, 0.86 /
# 0.42 / 0.08 against 0.88 / 0.46 / 0.04 (a query or two either way)
PQ_ITERS = 10
# The coded index's inverted lists (its coarse quantizer): k-means on COARSE_PER_LIST vectors a list, COARSE_ITERS
# rounds (faiss: 64 a list as build_ivf samples, 10 rounds). Training was a third of building SILVA's 100,000-gene
# val split; this trains in a third of the time, and the codes' own recall (200 copies a divergence, raw vector
# ranking) stayed within what a k-means seed alone moves: recall@1 / @10 / @50 at 20 % 0.135 / 0.365 / 0.535
# against 0.120-0.160 / 0.365-0.390 / 0.545-0.585 for two seeds of 64 and 10 (benchmarks: docs/BENCHMARKS.md)
COARSE_PER_LIST, COARSE_ITERS = 32, 5
# Exact (flat) sq8 codes cover [-SQ8_RANGE, SQ8_RANGE] in every dimension, the same range for every shard and
# every append: ranges trained on each shard's own vectors made a sharded index rank near-ties unlike one built
# at once. Search vectors are unit length; their values stayed within +-0.25 on 10^5 genes, and a value beyond
# the range is clipped to it. (IVF sq8 codes residuals to their list's centroid, trained per index: approximate.)
SQ8_RANGE = 0.5
IVF_NPROBE = 64  # lists scanned per query: recall@10 0.967 of exact at p50 4.3 ms at 10^6 x 512 (4,000 lists)
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 200, 128


def build_faiss(vectors: np.ndarray, kind: str = "auto", codec: str = "f32"):
    """(faiss index over L2-normalised vectors by inner product, the kind chosen), each vector stored as
    `codec` (CODECS; HNSW keeps float32)."""
    import faiss

    if codec not in CODECS:
        raise ValueError(f"unknown vector codec {codec!r} ({', '.join(CODECS)})")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    flat_max = CODED_FLAT_MAX if codec in ("pq64", "signs") else FLAT_MAX
    kind = ("flat" if len(vectors) <= flat_max else "ivf") if kind == "auto" else kind
    if codec == "pq64":
        return _build_pq(vectors, kind)
    if codec == "signs":
        return build_signs(vectors, kind) if kind in ("flat", "ivf") else build_faiss(vectors, kind, "f32")
    quantizer_type = getattr(faiss.ScalarQuantizer, CODECS[codec]) if CODECS[codec] else None
    if kind == "flat" and quantizer_type is None:
        index = faiss.IndexFlatIP(vectors.shape[1])
    elif kind == "flat":
        index = faiss.IndexScalarQuantizer(vectors.shape[1], quantizer_type, faiss.METRIC_INNER_PRODUCT)
        fixed = np.array([[-SQ8_RANGE], [SQ8_RANGE]], np.float32).repeat(vectors.shape[1], 1)
        index.train(fixed if codec == "sq8" else vectors)  # fp16 needs no range: training is a no-op
    elif kind == "ivf":
        index = build_ivf(vectors, ivf_lists(len(vectors)), quantizer_type=quantizer_type)
        index.nprobe = IVF_NPROBE
        return index, kind
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        raise ValueError(f"unknown index kind {kind!r} (auto, flat, ivf, hnsw)")
    index.add(vectors)
    return index, kind


def _build_pq(vectors: np.ndarray, kind: str):
    """(faiss index, kind) for the pq64 codec: build_coded's PQ_BYTES bytes a vector, except under PQ_MIN vectors
    (too few to train its codes well, and few enough that their bytes do not matter: 8-bit values)
    and for HNSW (float32)."""
    if kind not in ("flat", "ivf"):  # HNSW keeps float32 whatever the codec
        return build_faiss(vectors, kind, "f32")
    if len(vectors) < PQ_MIN:
        return build_faiss(vectors, kind, "sq8")
    return build_coded(vectors, kind)


def build_signs(vectors: np.ndarray, kind: str = "flat"):
    """(faiss index storing each vector as its d sign bits, d / 8 bytes, kind "flat" or "ivf"): the code a model
    trained with `model.vector_bits = 1` is trained for; the index's `signs` codec and the eval's @Nbit methods
    both build it. A float query's score is its dot with the record's signs scaled to unit length (asymmetric, as
    faiss scores a float query against any code); faiss's binary indexes compare two codes (Hamming), which loses
    more (unseen 16S recall@1 at 10 % 0.580 against 0.655, docs/RESULTS.md). Stored as an IndexIVFPQ whose
    sub-vectors are 8 values coded by fixed codebooks, the 256 sign patterns: the nearest pattern of 8 values is
    their signs, and faiss's IVF, ID filter and reader come with it. One list for flat."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    if kind not in ("flat", "ivf"):
        raise ValueError(f"sign codes are searched flat or by IVF, not {kind!r}")
    if d % 8:
        raise ValueError(f"a sign code packs 8 values a byte; {d} values do not")
    index, sample = _ivf_pq(n, d, kind, d // 8, PQ_CODES)
    index.by_residual = False  # the signs of the vector itself, not of its distance to a list's centroid
    index.pq.cp.niter, index.pq.cp.min_points_per_centroid = 0, 0  # its codebooks are set below, not learned
    index.train(vectors[sample] if n >= PQ_CODES else np.resize(vectors, (PQ_CODES, d)))
    faiss.copy_array_to_vector(np.tile(SIGN_PATTERNS / np.float32(np.sqrt(d)), (d // 8, 1)).ravel(), index.pq.centroids)
    index.add(vectors)
    return index, kind


# The 256 patterns of 8 signs (+-1), code c's value j the sign of bit j of c: build_signs's fixed codebook.
SIGN_PATTERNS = (2 * ((np.arange(256)[:, None] >> np.arange(8)) & 1) - 1).astype(np.float32)


def build_coded(vectors: np.ndarray, kind: str = "flat", size: int = PQ_BYTES):
    """(faiss index storing each vector in at most `size` bytes, kind "flat" or "ivf"): 8 bits a value for vectors
    of at most `size` values, else an IndexIVFPQ (one list for flat) of the most sub-vectors up to `size` that
    divide the dimension, one byte each, its codebooks trained on a sample of the vectors. The one definition of
    a vector in N bytes: the index's pq64 codec and the eval's @Nb methods both build it. ValueError under PQ_CODES
    vectors to product-quantise."""

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    if kind not in ("flat", "ivf"):
        raise ValueError(f"coded vectors are searched flat or by IVF, not {kind!r}")
    if d <= size:
        return build_faiss(vectors, kind, "sq8")
    if n < PQ_CODES:
        raise ValueError(f"{n} vectors are too few to product-quantise to {size} bytes (it needs {PQ_CODES})")
    codes = max(m for m in range(1, size + 1) if d % m == 0)  # sub-vectors of equal size
    index, sample = _ivf_pq(n, d, kind, codes, PQ_MIN)
    # Under PQ_MIN vectors (the eval's sets) faiss warned once a sub-vector, 64 lines a coder, that 39 a code are
    # wanted: the warning's only effect; the codes are trained as before.
    index.pq.cp.min_points_per_centroid = min(39, n // PQ_CODES)
    index.pq.cp.niter = PQ_ITERS
    index.train(vectors[sample])
    index.add(vectors)
    return index, kind


def _ivf_pq(n: int, d: int, kind: str, subvectors: int, floor: int):
    """(untrained IndexIVFPQ by inner product of `subvectors` one-byte parts, the rows of n to train it on): its
    lists and coarse training as build_coded and build_signs both want them, at least `floor` rows. Flat is one
    inverted list scanned whole: faiss's IndexPQ takes no ID filter (--where), its IVF form does."""
    import faiss

    lists = 1 if kind == "flat" else ivf_lists(n)
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, lists, subvectors, 8, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = min(IVF_NPROBE, lists)
    index.cp.niter, index.cp.min_points_per_centroid = COARSE_ITERS, min(39, COARSE_PER_LIST)
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, max(floor, COARSE_PER_LIST * lists)), replace=False))
    return index, sample


def ivf_lists(n: int) -> int:
    """Inverted lists for n vectors: about 4 sqrt(n) (4,000 at 10^6, measured better than 1,000: recall@10
    0.967 at 4.3 ms with nprobe 64, against 0.949 at 5.4 ms with nprobe 32; 256 s to train on 2 cores), at
    least 1 and at most n / 39 (faiss wants 39 training points per list)."""
    return int(max(1, min(4 * np.sqrt(n), n // 39)))


def build_ivf(vectors: np.ndarray, nlist: int, seed: int = 0, quantizer_type=None):
    """IndexIVFFlat (or IndexIVFScalarQuantizer of `quantizer_type`) by inner product, its coarse quantizer
    trained on at most 64 vectors per list."""
    import faiss

    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    d, metric = vectors.shape[1], faiss.METRIC_INNER_PRODUCT
    if quantizer_type is None:
        index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
    else:
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, quantizer_type, metric)
    rng = np.random.default_rng(seed)
    sample = vectors[np.sort(rng.choice(len(vectors), min(len(vectors), 64 * nlist), replace=False))]
    index.train(sample)
    index.add(vectors)
    return index


def search(index, queries: np.ndarray, k: int, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices [q, k] int64, similarities [q, k]), best first, k capped at the index size; missing
    neighbours are index -1. The one order (indices first) every search in gene-ae returns.

    `ids`: search only these vectors (faiss's ID selector, applied while scanning, so an exact index gives
    exactly the answer of an index holding only them)."""
    import faiss

    k = min(k, index.ntotal if ids is None else len(ids))
    if k <= 0 or len(queries) == 0:
        return np.zeros((len(queries), max(k, 0)), np.int64), np.zeros((len(queries), max(k, 0)), np.float32)
    params = None
    if ids is not None:
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=index.nprobe) if hasattr(index, "nprobe") else (
            faiss.SearchParametersHNSW(sel=selector, efSearch=index.hnsw.efSearch) if hasattr(index, "hnsw")
            else faiss.SearchParameters(sel=selector)
        )  # fmt: skip
    sims, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
    return idx.astype(np.int64), np.clip(sims, -1.0, 1.0)  # quantised codes can overshoot a cosine of 1


def requantised(index, matrix: np.ndarray) -> np.ndarray:
    """[n, d] float32: each row coded as `index` stores its vectors and decoded again (unchanged for an index
    that keeps float32, such as HNSW's)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if hasattr(index, "hnsw"):
        return matrix
    return index.sa_decode(index.sa_encode(matrix))


def reconstruct(index, rows: np.ndarray) -> np.ndarray:
    """[len(rows), d] float32: the vectors stored at these positions, decoded from their codes (an IVF index
    gets the id -> list map this needs first)."""
    import faiss

    if hasattr(index, "nprobe"):
        faiss.extract_index_ivf(index).make_direct_map()
    out = np.zeros((len(rows), index.d), np.float32)
    for i, r in enumerate(rows.tolist()):
        out[i] = index.reconstruct(int(r))
    return out


def read_faiss(path: Path):
    import faiss

    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise ValueError(f"{path}: unreadable faiss index ({str(exc).strip().splitlines()[-1]})") from None


def write_faiss(index, path: Path) -> None:
    """faiss.write_index, its RuntimeError on a failed write (a full disk) an OSError naming path."""
    import faiss

    try:
        faiss.write_index(index, str(path))
    except RuntimeError as exc:
        text = str(exc).strip().splitlines()[-1]
        code = errno.ENOSPC if "No space left" in text else errno.EIO
        raise OSError(code, os.strerror(code) if code == errno.ENOSPC else text, str(path)) from None
