"""Search as a library: query token arrays -> ranked hits, the way `gene-ae search` answers.

Candidate lists (dense, windows, sparse: gene_ae/search/candidates.py), gathered from every shard of the
collection, are fused by reciprocal rank fusion (a record's score is the sum over lists of 1 / (RRF_K +
rank)), and the top `rerank` of every list (`alignment_pool`) are aligned to the query
(gene_ae/search/align.py) and ordered by identity. The evaluation's "+align" methods re-rank with the
same `rerank`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from types import MappingProxyType

import numpy as np

from gene_ae.core.embedding import Embed
from gene_ae.core.threads import in_threads
from gene_ae.index.collection import Collection
from gene_ae.index.directory import IndexDir
from gene_ae.search import align
from gene_ae.search.candidates import (
    DEFAULT_SOURCES,
    QUERY_PIECE,
    SOURCES,
    Candidate,
    PieceHits,
    QueryPieces,
    alignment_pool,
    candidates,
    pool_candidates,
    segment_counts,
    shard_hits,
)
from gene_ae.search.candidates import fuse as fuse_lists
from gene_ae.search.chain import OVERLAP, inside
from gene_ae.search.depth import (
    DEEP,
    DEEP_BELOW,
    DEEP_FLAT,
    DEEP_POOL,
    DEEP_TRACE,
    deep_candidates,
    deeper,
    long_first,
    pieces_of,
)
from gene_ae.search.hits import Hit, Subject
from gene_ae.search.progress import Progress, Share, locked
from gene_ae.search.regions import RegionPaths, chaining
from gene_ae.search.rerank import rerank
from gene_ae.search.stats import SearchSpace, evalue

REGION_EVALUE = 10.0  # blastn's default -evalue: a hit expected more often than this by chance heads no region
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al. 2009); ranks past ~60 barely count
# Candidates aligned per list by default, chosen on the val split of a real collection (SILVA SSU, the first
# 20,000 records, 50 queries a divergence; docs/BENCHMARKS.md): with the k-mer list alone, recall@1 at 10 / 20 /
# 30 % was 1.00 / 0.94 / 0.78 at depth 20 and 1.00 / 0.96 / 0.86 at depth 40 (recall@10 at 30 %: 0.82 and 0.92),
# for 17.1 and 20.2 ms a query. (Stop 26 chose 20 on chimp genes, where depth 20 was within 0.005 of 50.)
DEFAULT_RERANK = 40


@dataclass
class SearchConfig:
    k: int = 10  # hits per query
    rerank: int = DEFAULT_RERANK  # align the top N of every candidate list (0: off); hits reported by score
    candidates: int = 50  # records taken from each candidate list before fusion
    # which candidate lists to fuse. The exact k-mers alone by default: on the val split of a real collection
    # (SILVA SSU, 20,000 records, 250 queries; docs/BENCHMARKS.md) the vector lists added no recall at any
    # divergence and cost the model's load (1 s a command) and 25 % of the time a query.
    sources: tuple[str, ...] = DEFAULT_SOURCES
    batch_size: int = 64
    trace: bool = True  # give each reported, aligned hit its local alignment and BLAST statistics
    evalue: float | None = None  # report only traced hits with an expect value at most this (blastn -evalue)
    deep: int = DEEP  # candidates aligned when the best of the first `rerank` is below deep_below identity (0: off)
    deep_below: float = DEEP_BELOW
    deep_flat: float = DEEP_FLAT  # ... and the top-th candidate's k-mer score is at least this share of the first's
    deep_trace: int = DEEP_TRACE  # a remote query's best this many by identity are traced and ranked by score
    # a remote gene query's `deep` are picked from its first deep_pool by k-mers, by co-linear 8-mers (depth.py;
    # at most `deep`: its first `deep` by k-mers, as before)
    deep_pool: int = DEEP_POOL
    # A gene query's candidates (k-mer list alone) scoring under this share of the best are neither aligned nor
    # reported: they share no more k-mers than chance, and blastn would report none of them. 0 (the default): none
    # left out (the --rerank pool aligned, -k hits as before). 0.1 on the val splits: no hit of the SILVA val
    # changed, real genome windows (seed 0) 0.149 -> 0.135 s a query at the same recall, one 3 kb query 0.42 -> 0.18
    # s (docs/BENCHMARKS.md).
    vote_floor: float = 0.0


# `gene-ae search --fast` (Searcher callers: `fast(cfg)`): a gene-size query's first 3 candidates aligned, no deep
# search (a query over 4 kb chains max(3, its pieces, its crowd) candidates, at most `candidates`, not 300). Chosen
# on the val split of the real genome windows (seed 0, 150 queries of 0.3-90 kb; docs/BENCHMARKS.md): recall@1 at
# 10 / 20 / 30 % 0.73 / 0.70 / 0.50 in 0.025 s a query, against the default's 0.83 / 0.73 / 0.53 in 0.133 s and
# minimap2 -x asm20's 0.30 / 0.23 / 0.07 in 0.018 s; 1, 2, 5 and 10 aligned gave the same recall within a query, 1
# no faster (a long query chains its crowd whatever --rerank is), 0 (k-mers alone) 0.53 / 0.47 / 0.33.
FAST: Mapping[str, int] = MappingProxyType({"rerank": 3, "deep": 0})


def fast(cfg: SearchConfig) -> SearchConfig:
    """`cfg` with FAST's settings: several times faster than the default on long queries, a remote gene query
    found first less often (docs/BENCHMARKS.md)."""
    return replace(cfg, **FAST)


# ------------------------------------------------------------------------------------------------ search


def fuse(lists: Sequence[list[Candidate]], rrf_k: int = RRF_K) -> list[Candidate]:
    """Reciprocal rank fusion with this module's constant (gene_ae/search/candidates.py fuse)."""
    return fuse_lists(lists, rrf_k)


def search(
    opened: IndexDir | Collection,
    queries: Sequence[np.ndarray],
    embed: Embed | None,
    cfg: SearchConfig,
    subject: Subject | None = None,
    allowed: np.ndarray | None = None,
    features: Mapping[str, Sequence] | None = None,
    progress: Progress | None = None,
    threads: int = 1,
) -> list[list[Hit]]:
    """Ranked hits per query; records are global positions in the collection. `embed` turns token arrays
    into the index model's vectors (None: no dense lists); `subject` gives a record's tokens for
    re-ranking (default: the sequences stored in the index); `allowed` (a boolean mask over records, from
    a --where filter) restricts every candidate list before it ranks, so the records that pass are ranked
    as in an index holding only them; removed records never come back. `features` (name -> one value per
    query) are the queries' own, for a model whose vector takes features. `progress` is told the query bases
    done as they are (within a long query too: gene_ae/search/progress.py). `threads`: queries searched at once
    (each query's hits are the same whatever the number).

    Three steps, which gene_ae/search/serve_index.py runs apart (the middle one on each shard's replicas): `ask`
    (the query pieces, embedded once), `shard_hits` per shard, `finish` (merge, fuse, align, rank)."""
    collection = opened if isinstance(opened, Collection) else Collection.of(opened)
    subject, allowed = _prepared(collection, cfg, subject, allowed)
    asked = _asked(collection, queries, embed, cfg, features)
    space, n = search_space(collection), len(queries)

    def part(first: int, end: int, tell: Progress | None, shard_threads: int = 1) -> list[list[Hit]]:
        mine = asked if (first, end) == (0, n) else asked.part(first, end)
        per_shard = _answers(collection, mine, depth(cfg), allowed, shard_threads)
        return finish(queries[first:end], mine, per_shard, cfg, subject, space, tell, shard_threads)

    if threads <= 1 or n <= 1:  # one query: its threads take the shards instead (a 10^6-gene index's 11 shards)
        return part(0, n, progress, threads)
    # The vectors were embedded above, with all the queries, so each query's hits are one thread's to the bit.
    step, tell = -(-n // (threads * TASKS_A_THREAD)), locked(progress)
    found = in_threads(lambda a: part(a, min(a + step, n), tell), range(0, n, step), threads)
    return [hits for task in found for hits in task]


# Consecutive queries a task, this many tasks a thread: a long query holds back only its own task's few others, and
# what a task costs beside its queries (each shard's --where mask over every record) is paid a few dozen times a
# search, not once a query of a million reads. Asking the shards a query at a time cost nothing measurable against
# all 250 at once on the SILVA val split (docs/BENCHMARKS.md).
TASKS_A_THREAD = 16


def _prepared(
    collection: Collection, cfg: SearchConfig, subject: Subject | None, allowed: np.ndarray | None
) -> tuple[Subject | None, np.ndarray | None]:
    """(the subjects' sequences, the records search may return), the settings checked: what every query's steps
    share."""
    check_config(cfg)
    if cfg.rerank and subject is None:
        if any(s.sequences is None for s in collection.shards):
            raise ValueError(
                "this index holds no sequences (made by an older gene-ae): give --collection or --rerank 0"
            )
        subject = collection.sequence
    return subject, collection.allowed(allowed)


def _asked(
    collection: Collection, queries: Sequence[np.ndarray], embed: Embed | None, cfg: SearchConfig,
    features: Mapping[str, Sequence] | None,
) -> QueryPieces:  # fmt: skip
    """`ask` of the pieces every shard of the collection can answer."""
    return ask(merge_shapes([shard_shape(s) for s in collection.shards]), queries, embed, cfg, features)


def _answers(
    collection: Collection, asked: QueryPieces, n: int, allowed: np.ndarray | None, threads: int = 1
) -> list[Mapping[str, PieceHits]]:
    """Each shard's hits for the asked pieces (`allowed`: over the whole collection), `threads` shards at once (the
    postings' loops release Python's lock; each shard's hits are its own whatever the number)."""
    bounds = list(zip(collection.shards, collection.offsets[:-1].tolist(), collection.offsets[1:].tolist()))
    if threads > 1 and asked.segments is not None and collection.shards[0].kmers is not None:
        segment_counts(collection.shards[0].kmers, asked)  # every shard's k-mer settings are the same
    return in_threads(lambda b: shard_hits(b[0], b[1], asked, n, None if allowed is None else allowed[b[1] : b[2]]),
                      bounds, threads)  # fmt: skip


def each_region(
    opened: IndexDir | Collection,
    query: np.ndarray,
    embed: Embed | None,
    cfg: SearchConfig,
    subject: Subject | None = None,
    allowed: np.ndarray | None = None,
    features: Mapping[str, Sequence] | None = None,
    progress: Progress | None = None,
) -> Iterator[Hit]:
    """Every aligned region of one query's candidates, traced as search's reported hits are, one subject record
    after another (cfg.k bounds nothing): what a genome comparison sums (gene_ae/search/genomes.py). Lazy, so
    memory holds one subject's anchors and the regions not yet consumed, whatever the number of candidates. A
    query up to 2 QUERY_PIECE bases is aligned whole to its first cfg.rerank candidates instead. The other
    arguments are search's (`features`: one value per name, the query's)."""
    collection = opened if isinstance(opened, Collection) else Collection.of(opened)
    if not cfg.rerank:
        raise ValueError("every region is aligned: rerank must be above 0")
    subject, allowed = _prepared(collection, cfg, subject, allowed)
    asked = _asked(collection, [query], embed, replace(cfg, deep_pool=0), features)  # no deep search here
    per_shard = _answers(collection, asked, depth(cfg), allowed)
    space, share = search_space(collection), Share(int(query.size), progress)
    hits, top = _candidates(0, asked, _lists(asked, per_shard, cfg, 1), cfg)
    with ExitStack() as stack:
        if query.size <= 2 * QUERY_PIECE:
            aligned = [h for h in rerank(query, hits, subject, top) if h.identity is not None]
            paths = None
        else:
            ranked, paths, subject = stack.enter_context(chaining(query, hits, subject, len(hits), share))
            aligned = sorted((h for h in ranked if h.identity is not None), key=lambda h: h.subject)  # stable
        traced_share = share.within(0.5, 1.0)
        for i, h in enumerate(aligned):
            h = traced(query, h, subject, space, paths)
            traced_share((i + 1) / len(aligned))
            if _expected(h, cfg):
                yield h
    share.at(1.0)


def _expected(hit: Hit, cfg: SearchConfig) -> bool:
    """Whether a hit passes --evalue (every hit without one; with one, only a traced hit at most that)."""
    return cfg.evalue is None or (hit.evalue is not None and hit.evalue <= cfg.evalue)


def search_space(collection: Collection) -> SearchSpace:
    """The collection's size for e-values: its bases and records (removed ones included, as BLAST counts a
    database's), from the records' lengths."""
    lengths = [s.lengths for s in collection.shards]
    return SearchSpace(int(sum(int(x.sum()) for x in lengths)), sum(x.size for x in lengths))


def check_config(cfg: SearchConfig) -> None:
    """Refuse settings no search can answer (the CLI checks the ranges while parsing; library callers here)."""
    if cfg.k < 1 or min(cfg.rerank, cfg.deep, cfg.deep_trace, cfg.deep_pool) < 0:
        raise ValueError(f"k must be >= 1, rerank, deep, deep_trace and deep_pool >= 0, got k={cfg.k}, rerank="
                         f"{cfg.rerank}, deep={cfg.deep}, deep_trace={cfg.deep_trace}, "
                         f"deep_pool={cfg.deep_pool}")  # fmt: skip
    unknown = set(cfg.sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown candidate source(s) {sorted(unknown)} (known: {', '.join(SOURCES)})")


def default_sources(sparse: bool) -> tuple[str, ...]:
    """The candidate lists a search of an index reads unless told (`gene-ae search` and `serve --index`): the exact
    k-mers, or the record vectors (vector-first) where the index holds no k-mer index (`gene-ae embed --no-kmers`)."""
    return DEFAULT_SOURCES if sparse else ("dense",)


def depth(cfg: SearchConfig) -> int:
    """The nearest pieces each shard returns per query piece (and records each candidate list keeps): a
    vector-first search's lists are its deep_pool deep."""
    n = max(cfg.candidates, cfg.k, cfg.rerank, cfg.deep if cfg.rerank else 0)
    return max(n, cfg.deep_pool) if vector_first(cfg) else n


def vector_first(cfg: SearchConfig) -> bool:
    """A search of the vectors alone (no k-mer list) that aligns: a gene query's first deep_pool candidates by the
    vectors are ordered by co-linear 8-mers (depth.deep_candidates) before any is aligned. On SILVA's val split the
    64-byte codes put a 20 % copy's source in their first 40 for 0.52 of the queries and in their first 2,000 for
    0.94; the 8-mers on one band of diagonals put it in the first 40 of those for 0.92 (docs/RESULTS.md)."""
    return "sparse" not in cfg.sources and cfg.rerank > 0 and cfg.deep_pool > 0


PieceShape = tuple[int, "int | None"]  # (window of the query's window pieces, 0: none; k-mer segment, None: none)


def shard_shape(shard: IndexDir) -> PieceShape:
    """The query pieces one shard can answer: windows if it holds window vectors, segments if k-mers. From its
    index.json alone, so a Serve ingress plans the pieces without asking the shards (one may be down)."""
    meta = shard.meta
    return (meta.window if meta.windows else 0, int(meta.settings["kmers"]["segment"]) if meta.sparse else None)


def merge_shapes(shapes: Sequence[PieceShape]) -> PieceShape:
    """The pieces asked of a collection: windows when any shard holds window vectors (every shard has the same
    window, Collection.open checks), segments as shard 0 cuts them."""
    return max(w for w, _ in shapes), shapes[0][1]


def ask(
    shape: PieceShape,
    queries: Sequence[np.ndarray],
    embed: Embed | None,
    cfg: SearchConfig,
    features: Mapping[str, Sequence] | None = None,
) -> QueryPieces:
    """What every shard is asked: the queries' vectors, window pieces and k-mer segments, computed once."""
    pool = cfg.deep_pool if cfg.rerank and cfg.deep and cfg.deep_pool > depth(cfg) else 0
    return QueryPieces.of(queries, embed, shape[0], shape[1], cfg.sources, features, pool)


def finish(
    queries: Sequence[np.ndarray],
    asked: QueryPieces,
    per_shard: Sequence[Mapping[str, PieceHits]],
    cfg: SearchConfig,
    subject: Subject | None,
    space: SearchSpace | None = None,
    progress: Progress | None = None,
    threads: int = 1,
) -> list[list[Hit]]:
    """Ranked hits per query from every shard's `shard_hits`: each source's pieces merged over the shards
    (then voted), the lists fused by RRF, the alignment pool re-ranked by identity, the hits reported traced
    (cfg.trace; e-values over `space`, the collection's size). Pure: the same shard answers give the same hits
    wherever they were computed. `progress`: told the query bases done (gene_ae/search/progress.py). `threads`: a
    gene query's reported hits traced that many at once (a search of one query; the same hits whatever the number)."""
    n = depth(cfg)
    lists = _lists(asked, per_shard, cfg, len(queries))
    # the k-mer list alone (the default): its scores are k-mer cosines (> 0), and a long query's pieces' best
    # records come first in it; fused (RRF) and vector lists are neither, so the tests below that read them do not
    kmers_alone = [s for s in SOURCES if any(s in hits for hits in per_shard)] == ["sparse"]
    out = []
    for q, query in enumerate(queries):
        hits, top = _candidates(q, asked, lists, cfg)
        share = Share(int(query.size), progress)
        if cfg.rerank:
            if subject is None:
                raise ValueError("re-ranking needs the subjects' sequences (give subject=, or rerank 0)")
            if query.size > 2 * QUERY_PIECE:  # a long query, voting in pieces, may hold several records: chain them
                # k-mers alone: as many as it has pieces (each piece's best come first in the vote), at least the
                # alignment pool's, and every one voted within deep_flat of the best (a crowd of near-identical
                # strains); on to --deep (at most n) when none of those shares a region with it (the vote's top were
                # chance). Other lists: all n (a vector-first search's pool is not chained whole).
                chained = depth(replace(cfg, deep_pool=0))
                first = long_first(hits, top, chained, pieces_of(asked, q), cfg) if kmers_alone else max(top, chained)
                deep = min(chained, cfg.deep)
                with chaining(query, hits, subject, first, share, deep, 1) as (ranked, paths, cached):
                    hits = _reported(query, ranked, cfg, cached, space, paths, share.within(0.5, 1.0))
            else:
                if cfg.vote_floor and kmers_alone and hits:
                    hits = [h for h in hits if h.score >= cfg.vote_floor * hits[0].score]
                    top = min(top, len(hits))
                if vector_first(cfg):  # aligned, and --deep, in the 8-mers' order of the vectors' first deep_pool
                    hits = deep_candidates(query, hits, hits[: cfg.deep_pool], 0, replace(cfg, deep=n), subject)
                ranked = rerank(query, hits, subject, top, keep=cfg.k)
                traced_k = cfg.k
                if ranked and (ranked[0].identity or 0.0) < cfg.deep_below:  # remote: --deep, --deep-trace
                    further = deeper(hits, top, cfg, kmers_alone)
                    if further or cfg.deep_trace > cfg.k:
                        traced_k = max(cfg.k, cfg.deep_trace)
                        if further and kmers_alone and cfg.deep_pool > cfg.deep:
                            # the shards' pool list, or (a pool no longer than the list) the list itself
                            pool = _hits(pool_candidates(per_shard, q, asked.pool), None) if asked.pool else (
                                hits[: cfg.deep_pool])  # fmt: skip
                            if cfg.vote_floor:  # what the floor left out is neither aligned nor reported
                                pool = [h for h in pool if h.score >= cfg.vote_floor * hits[0].score]
                            hits = deep_candidates(query, hits, pool, top, cfg, subject)
                        ranked = rerank(query, hits, subject, cfg.deep if further else top, keep=traced_k)
                hits = _reported(query, ranked, replace(cfg, k=traced_k), subject, space, threads=threads)
        hits = [h for h in hits[: cfg.k] if _expected(h, cfg)]
        out.append(hits)
        share.at(1.0)
    return out


def _lists(
    asked: QueryPieces, per_shard: Sequence[Mapping[str, PieceHits]], cfg: SearchConfig, n_queries: int
) -> list[list[list[Candidate]]]:
    """Each source's candidates per query, its pieces merged over the shards, then voted."""
    n = depth(cfg)
    lists: list[list[list[Candidate]]] = []
    for source in SOURCES:
        parts = [hits[source] for hits in per_shard if source in hits]
        if parts:
            lists.append(candidates(source, PieceHits.merge(parts, n), n_queries, n))
    if not lists:
        raise ValueError(f"no candidate source available in this index among {', '.join(cfg.sources)} (an index "
                         "built with --no-kmers holds no sparse list: --sources dense)")  # fmt: skip
    return lists


def _candidates(
    q: int, asked: QueryPieces, lists: list[list[list[Candidate]]], cfg: SearchConfig
) -> tuple[list[Hit], int]:
    """Query q's candidates as hits, fused, and how many of them are aligned (the alignment pool)."""
    n = depth(cfg)
    fused = fuse([lst[q] for lst in lists]) if len(lists) > 1 else lists[0][q]
    top = cfg.rerank
    if cfg.rerank and len(lists) > 1:
        fused = alignment_pool([lst[q] for lst in lists], fused, cfg.rerank)
        top = len({c.record for lst in lists for c in lst[q][: cfg.rerank]})
    similarity = {c.record: c.score for c in lists[0][q]} if asked.vectors is not None else None
    return _hits(fused[: max(n, top)], similarity), top


def _hits(found: Sequence[Candidate], similarity: Mapping[int, float] | None) -> list[Hit]:
    """Candidates as hits, not yet aligned (`similarity`: each record's vector cosine, where vectors were read)."""
    return [Hit(c.record, c.score, None, c.start, c.end, similarity.get(c.record) if similarity else None)
            for c in found]  # fmt: skip


def _reported(
    query: np.ndarray, ranked: list[Hit], cfg: SearchConfig, subject: Subject, space: SearchSpace | None,
    paths: RegionPaths | None = None, done: Callable[[float], None] | None = None, threads: int = 1,
) -> list[Hit]:  # fmt: skip
    """The first k ranked hits, traced when cfg.trace (with the regions of the query they leave uncovered),
    `threads` at a time (parasail's traceback releases Python's lock; not with `paths`, a long query's chain table,
    which is one thread's); `done(f)`: the share f of the first k traced (a progress line)."""
    hits = ranked[: cfg.k]
    if not cfg.trace:
        return hits
    finished, lock = [0], threading.Lock()

    def trace_one(h: Hit) -> Hit:
        out = traced(query, h, subject, space, paths)
        if done is not None:
            with lock:
                finished[0] += 1
                done(finished[0] / len(hits))
        return out

    out = in_threads(trace_one, hits, threads if paths is None else 1)
    out += [traced(query, h, subject, space, paths) for h in uncovered(out, ranked[cfg.k :])]
    return regions_first(out)


def uncovered(chosen: list[Hit], rest: list[Hit]) -> list[Hit]:
    """The aligned hits of `rest` that match a part of the query no hit of `chosen` covers (most of their query
    span outside every chosen span): for a long query holding several records, each record it holds. A gene query
    matches its candidates whole, so none are added and nothing more is traced."""
    spans = [(h.query_start, h.query_end) for h in chosen if h.query_end > h.query_start]
    out = []
    for h in rest:
        if h.identity is None or h.query_end <= h.query_start:
            continue
        if _inside(h, spans) <= OVERLAP:
            out.append(h)
            spans.append((h.query_start, h.query_end))
    return out


def regions_first(hits: list[Hit]) -> list[Hit]:
    """Traced hits ordered as BLAST orders them, by the local alignment's raw score, except that the best hit of
    each region of the query comes before hits that overlap a better one (minimap2's primary / secondary), so a
    query holding several records reports each of them within -k. For a gene query (one region) this is the score
    order. Untraced hits follow. The score order was chosen on the val split of the SILVA collection
    (docs/BENCHMARKS.md): ranking by edit identity put a near-identical relative first where the affine score,
    like blastn's, picks the source. A hit whose e-value is above REGION_EVALUE is chance, no region of its own: a
    12-base match at the end of a 2.5 kb query (e-value 7,350) otherwise came second, above relatives aligned whole."""
    ranked = sorted(hits, key=lambda h: -h.local.score if h.local is not None else 1)
    primary, secondary, spans = [], [], []
    for h in ranked:
        chance = h.evalue is not None and h.evalue > REGION_EVALUE
        if h.local is not None and not chance and _inside(h, spans) <= OVERLAP:
            primary.append(h)
            spans.append((h.query_start, h.query_end))
        else:
            secondary.append(h)
    return primary + secondary


def _inside(hit: Hit, spans: list[tuple[int, int]]) -> float:
    return inside(hit.query_start, hit.query_end, spans)


def traced(
    query: np.ndarray, hit: Hit, subject: Subject, space: SearchSpace | None, paths: RegionPaths | None = None
) -> Hit:
    """An aligned hit with its local alignment (align.trace) and, given the collection's size, its e-value;
    `paths`: the path of a long query's chained region, from its anchors."""
    if hit.identity is None:
        return hit
    if paths is not None and not hit.cigar:
        hit = replace(hit, cigar=paths(hit))
    found = align.Alignment(hit.identity, hit.subject_start, hit.subject_end, hit.strand, hit.query_start,
                            hit.query_end, hit.cigar)  # fmt: skip
    local = align.trace(query, subject(hit.subject), found)
    if local is None:
        return hit
    e = evalue(local.score, int(query.size), space) if space is not None else None
    return replace(hit, local=local, evalue=e, subject_start=local.subject_start, subject_end=local.subject_end,
                   query_start=local.query_start, query_end=local.query_end)  # fmt: skip
