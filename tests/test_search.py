"""Hybrid search, stage by stage, on bundled real data with a tiny untrained model: what each stage must
get right on its own (fusion, window votes, k-mer index, long-sequence alignment, stored sequences), then
the whole path through the library. The `gene-ae embed` / `gene-ae search` command lines (reranking, --rerank 0,
--overwrite) are tested once, in test_serving.py::test_embed_and_search_find_exact_and_mutated_copies."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from shared import tiny_model

from gene_ae.core.embedding import Embed
from gene_ae.core.mutate import mutate
from gene_ae.core.records import InputRecord, iter_input
from gene_ae.index import build as embedding
from gene_ae.index import vectors
from gene_ae.index.directory import IndexDir
from gene_ae.index.kmer_index import LONGER, KmerIndex, KmerIndexConfig, segment_starts
from gene_ae.index.seqstore import SequenceStore, SequenceWriter
from gene_ae.model.encoder import Encoder
from gene_ae.search import align, rerank
from gene_ae.search import engine as search
from gene_ae.search.candidates import Candidate, vote
from gene_ae.search.engine import fuse
from shard_tools.alphabet import FIRST_BASE, N, reverse_complement
from shard_tools.inputs import ReaderConfig

WINDOW = 256


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return tiny_model(WINDOW)[1]


@pytest.fixture(scope="module")
def genes(data_dir: Path) -> list[InputRecord]:
    return list(iter_input(data_dir / "genefam" / "dog_sample.tsv.gz", ReaderConfig(label_column="class")))[:60]


@pytest.fixture(scope="module")
def lam(data_dir: Path) -> InputRecord:
    return next(iter_input(data_dir / "viruses" / "lambda_phage.fa"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, encoder, genes, lam):
    """An index of 60 genes and the 48.5 kb lambda genome, built by the streaming builder in small batches."""
    out = tmp_path_factory.mktemp("index") / "idx"
    embed = partial(embedding.embed_local, encoder, batch_size=64)
    cfg = embedding.BuildConfig(batch_bases=20_000)
    model = embedding.ModelInfo(uri="mem", version="", dim=64, window=WINDOW)
    embedding.build_index(iter(genes + [lam]), embed, model, out, cfg)
    return IndexDir.open(out), embed, out


# ------------------------------------------------------------------------------------------------ stages


def test_reciprocal_rank_fusion_sums_ranks_and_keeps_the_narrowest_region() -> None:
    dense = [Candidate(7, 0.9, 0, 1000), Candidate(3, 0.8, 0, 500)]
    sparse = [Candidate(3, 0.5, 100, 200), Candidate(9, 0.4, 0, 50), Candidate(7, 0.1, 0, 1000)]
    fused = fuse([dense, sparse], rrf_k=60)
    assert [c.record for c in fused] == [3, 7, 9]  # 3: 1/62 + 1/61 > 7: 1/61 + 1/63 > 9: 1/62
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1].score == pytest.approx(1 / 61 + 1 / 63)
    assert (fused[0].start, fused[0].end) == (100, 200)  # the sparse list's region is narrower
    assert (fused[1].start, fused[1].end) == (0, 1000)
    # Aligning each list's top 2: fused order alone would put 9 (found by one list only) last.
    lists = [[Candidate(r, 0.0) for r in (1, 2, 3)], [Candidate(r, 0.0) for r in (1, 2, 3)], [Candidate(9, 0.0)]]
    pool = search.alignment_pool(lists, fuse(lists), 2)
    assert [c.record for c in pool] == [1, 2, 9, 3]  # 1, 2 and 9 are aligned, 3 follows


def test_window_votes_sum_each_query_pieces_best_and_span_the_region() -> None:
    # Two query pieces; record 5 is the best hit of both (windows 1000-1256 and 1128-1384), record 2 of one.
    owner = np.array([[5, 2, 5], [5, -1, 2]])
    score = np.array([[0.9, 0.8, 0.7], [0.6, 0.0, 0.5]], dtype=np.float32)
    start = np.array([[1000, 0, 3000], [1128, 0, 0]])
    end = np.array([[1256, 256, 3256], [1384, 0, 256]])
    cands = vote(owner, score, start, end, n=10)
    assert [c.record for c in cands] == [5, 2]
    assert cands[0].score == pytest.approx(0.9 + 0.6) and cands[1].score == pytest.approx(0.8 + 0.5)
    assert (cands[0].start, cands[0].end) == (1000, 1384)  # only the best window per query piece counts


def _vote_by_loops(hit_owner, hit_score, hit_start, hit_end, n: int) -> list[tuple[int, float, int, int]]:
    """vote's rules written as plain loops over the pieces (the definition vote computes in arrays)."""
    best: dict[int, list] = {}
    own: dict[int, tuple[int, float]] = {}
    per_piece = max(1, n // max(hit_owner.shape[0], 1))
    for row in range(hit_owner.shape[0]):
        seen: set[int] = set()
        for o, s, a, b in zip(hit_owner[row], hit_score[row], hit_start[row], hit_end[row]):
            if o < 0 or o in seen:
                continue
            seen.add(int(o))
            if len(seen) <= per_piece:
                own[int(o)] = min(own.get(int(o), (per_piece + 1, 0.0)), (len(seen), -float(s)))
            cur = best.setdefault(int(o), [0.0, int(a), int(b)])
            cur[0] += float(s)
            cur[1], cur[2] = min(cur[1], int(a)), max(cur[2], int(b))
    order = sorted(best, key=lambda o: -best[o][0])
    first = sorted(own, key=lambda o: own[o])[:n]
    ranked = first + [o for o in order if o not in own][: n - len(first)]
    return [(o, best[o][0], best[o][1], best[o][2]) for o in ranked]


@pytest.mark.parametrize("seed", range(40))
def test_vote_keeps_its_rules_on_random_pieces(seed) -> None:
    """Repeats, misses (-1), tied scores and every shape from one piece to more pieces than candidates."""
    rng = np.random.default_rng(seed)
    pieces, cols, records = int(rng.integers(1, 60)), int(rng.integers(1, 12)), int(rng.integers(1, 30))
    owner = rng.integers(-1, records, (pieces, cols))
    score = rng.choice(np.array([0.1, 0.25, 0.5, 0.7], np.float32), (pieces, cols))
    start = rng.integers(0, 1000, (pieces, cols))
    end = start + rng.integers(0, 500, (pieces, cols))
    n = int(rng.integers(1, 40))
    got = [(c.record, c.score, c.start, c.end) for c in vote(owner, score, start, end, n)]
    assert got == _vote_by_loops(owner, score, start, end, n)


def test_a_long_querys_matching_pieces_put_their_records_before_chance_ones() -> None:
    """Pieces of a genome-sized query that match nothing still have a best record, by chance, with a small score
    summed over thousands of pieces; the records that pieces match well come first (a 10 Mb query with 50 stored
    genes reported 27 when chance sums ranked first, 50 now)."""
    pieces = 1000
    owner = np.full((pieces, 2), 7)  # record 7: every piece's chance best, 0.05 each (50 summed)
    owner[:, 1] = 8
    score = np.full((pieces, 2), 0.05, dtype=np.float32)
    score[:, 1] = 0.04
    owner[3], score[3] = [1, 7], [0.9, 0.05]  # two pieces that match a record well
    owner[600], score[600] = [2, 7], [0.8, 0.05]
    spans = np.zeros((pieces, 2), dtype=np.int64)
    cands = vote(owner, score, spans, spans, n=3)
    assert [c.record for c in cands] == [1, 2, 7]


def test_sparse_index_finds_copies_on_both_strands_and_round_trips(tmp_path, genes) -> None:
    seqs = [g.tokens for g in genes]
    idx = KmerIndex.build(seqs, KmerIndexConfig())
    assert idx.cfg.k == 10  # genes: k 10; genes over 8 kb are two or more segments
    assert idx.n_segments == sum(segment_starts(s.size, 8192).size for s in seqs) > len(seqs)
    rng = np.random.default_rng(3)
    queries = [seqs[4], reverse_complement(seqs[11]), mutate(seqs[20], 0.2, rng)]
    found, sims = idx.search_segments(queries, 3)
    assert list(idx.owner[found[:, 0]]) == [4, 11, 20]
    assert sims[0, 0] == pytest.approx(1.0, abs=1e-4) and sims[1, 0] == pytest.approx(1.0, abs=1e-4)
    assert sims[2, 0] > 2 * sims[2, 1]
    idx.save(tmp_path)
    again = KmerIndex.load(tmp_path)
    np.testing.assert_array_equal(again.search_segments(queries, 3)[0], found)
    (tmp_path / KmerIndex.FILE).write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="kmers.npz: not a readable k-mer index"):
        KmerIndex.load(tmp_path)


def test_an_exact_piece_of_a_longer_record_outranks_its_shorter_near_relatives(lam, genes) -> None:
    """By cosine a long record holding a query's piece ranks below shorter records holding it with a few
    mismatches (SILVA: an exact 300-base piece of a 1,975-base gene ranked 50th); a record holding most of the
    query scores at least that share over LONGER. A 30 % copy of a gene, sharing a few % of its 10-mers, still
    finds its source by cosine beside a long record's segments."""
    whole = np.concatenate([lam.tokens[:1000], lam.tokens[20_000:21_000]])  # a 2 kb record, no relative elsewhere
    rng = np.random.default_rng(5)
    relatives = []
    for _ in range(8):  # 1.2 kb records holding the piece's region with two substitutions in it
        r = whole[400:1600].copy()
        for at in rng.choice(np.arange(60, 340), 2, replace=False):  # r[50:350] is the piece
            r[at] = FIRST_BASE + (r[at] - FIRST_BASE + 1) % 4
        relatives.append(r)
    seqs = relatives + [whole, lam.tokens[30_000:], *(g.tokens for g in genes[:10])]
    idx = KmerIndex.build(seqs, KmerIndexConfig(k=10))
    piece = whole[450:750]
    found, sims = idx.search_segments([piece], 3)
    assert idx.owner[found[0, 0]] == 8 and sims[0, 0] == pytest.approx(1 / LONGER, abs=0.01)
    far = mutate(genes[3].tokens, 0.3, np.random.default_rng(1))
    found, _ = idx.search_segments([far], 1)
    assert idx.owner[found[0, 0]] == 10 + 3


def test_long_records_are_cut_into_segments_that_locate_a_piece(lam) -> None:
    idx = KmerIndex.build([lam.tokens], KmerIndexConfig(segment=4096))
    assert idx.cfg.k == 14  # a 48.5 kb record: long k
    assert idx.n_segments == 23 and idx.end.max() == lam.tokens.size
    piece = mutate(lam.tokens[30_000:33_000], 0.1, np.random.default_rng(0))
    seg, _ = idx.search_segments([piece], 1)
    overlap = min(idx.end[seg[0, 0]], 33_000) - max(idx.start[seg[0, 0]], 30_000)
    assert overlap >= 1500  # the segment holding most of the piece


def test_sequences_read_back_from_the_store_across_blocks(tmp_path, genes, lam) -> None:
    seqs = [g.tokens for g in genes[:5]] + [lam.tokens, genes[5].tokens[:1]]
    writer = SequenceWriter(tmp_path, block_bases=10_000)  # lambda spans five blocks
    assert [writer.add(s) for s in seqs] == list(range(7))
    written = writer.close()
    store = SequenceStore(tmp_path, cache_blocks=2)
    for i in (5, 0, 6, 3, 5):
        np.testing.assert_array_equal(store[i], seqs[i])
    assert written < sum(s.size for s in seqs) / 2  # compressed: under 4 bits a base
    with pytest.raises(IndexError):
        store[7]


def test_sequences_written_in_another_order_read_back_by_their_positions(tmp_path, genes, lam) -> None:
    """`gene-ae embed` writes a shard's sequences in the k-mer index's segment order: each record still reads back
    by its own position (a long one across blocks, an empty one), relatives side by side take less room than
    the same records in the input's order, and an order that is not a permutation is refused."""
    rng = np.random.default_rng(2)
    families = [[mutate(g.tokens, 0.01, rng) for _ in range(6)] for g in genes[:12]]
    seqs = [f[i] for i in range(6) for f in families] + [lam.tokens, np.zeros(0, np.uint8)]  # relatives apart
    together = np.array([i * 12 + f for f in range(12) for i in range(6)] + [72, 73])
    sizes = {}
    for name, order in (("input", None), ("families", together)):
        (tmp_path / name).mkdir()
        writer = SequenceWriter(tmp_path / name, block_bases=8192)
        assert [writer.add(s) for s in seqs] == list(range(len(seqs)))
        sizes[name] = writer.close(order)
        assert not (tmp_path / name / SequenceWriter.STAGED).exists()
        store = SequenceStore(tmp_path / name, cache_blocks=3)
        for i in rng.permutation(len(seqs)):
            np.testing.assert_array_equal(store[int(i)], seqs[i])
    assert sizes["families"] < 0.8 * sizes["input"], sizes
    writer = SequenceWriter(tmp_path, block_bases=8192)
    writer.add(seqs[0]), writer.add(seqs[1])
    with pytest.raises(ValueError, match="not a permutation"):
        writer.close(np.array([0, 0]))


@pytest.mark.parametrize("damage", ["span past the blocks", "span reversed", "offsets out of order"])
def test_a_sequence_table_naming_blocks_it_lacks_is_refused_on_open(tmp_path, lam, damage) -> None:
    """The table of where each record lives is checked whole when the store opens (a read never strays past the
    blocks, nor returns a record empty): a one-line ValueError naming the file."""
    writer = SequenceWriter(tmp_path, block_bases=8192)
    writer.add(lam.tokens), writer.add(lam.tokens[:100])
    writer.close()
    table = dict(np.load(tmp_path / "sequences.npz"))
    span, offsets = table["span"].astype(np.int64), table["offsets"].copy()
    if damage == "span past the blocks":
        span[1, 1] = offsets.size
    elif damage == "span reversed":
        span[0] = span[0, ::-1] if span[0, 0] != span[0, 1] else (1, 0)
    else:
        offsets[1] = offsets[-1] + 1
    np.savez(tmp_path / "sequences.npz", span=span, offsets=offsets)
    with pytest.raises(ValueError, match="not a sequence table") as err:
        SequenceStore(tmp_path)
    assert "\n" not in str(err.value)


def test_long_sequence_reranking_is_local_and_reports_the_region(lam, genes) -> None:
    rng = np.random.default_rng(1)
    # A 30 kb piece at 10 %: minimap2 maps it; the region is where it came from, identity is local.
    long_piece = mutate(lam.tokens[10_000:40_000], 0.1, rng)
    hit = align.align_hit(long_piece, lam.tokens)
    assert abs(hit.subject_start - 10_000) < 200 and abs(hit.subject_end - 40_000) < 200
    assert 0.8 < hit.identity < 0.95
    # A 2 kb piece at 20 % inside a region given by the votes: edlib infix, judged on the part.
    short_piece = mutate(lam.tokens[25_000:27_000], 0.2, rng)
    region = lam.tokens[20_000:32_000]
    hit = align.align_hit(short_piece, region, offset=20_000)
    assert abs(hit.subject_start - 25_000) < 50 and abs(hit.subject_end - 27_000) < 50
    assert 0.75 - align.UNALIGNED < hit.identity < 0.9  # less at most UNALIGNED for the region's other 10 kb
    # Genes of similar length stay global: an unrelated gene scores far below a 20 % copy.
    gene = genes[0].tokens
    copy = mutate(gene, 0.2, rng)
    assert align.align_hit(copy, gene).identity > align.align_hit(copy, genes[1].tokens).identity + 0.15


def test_bounded_alignment_skips_only_what_cannot_beat_the_bound(genes, lam) -> None:
    """align_hit(above=t) is None exactly when the identity is not above t (global and infix paths), and
    re-ranking with keep=k gives the same first k hits, identities included, as aligning every candidate."""
    rng = np.random.default_rng(5)
    pairs = [(mutate(genes[i].tokens, d, rng), genes[j].tokens) for i, j, d in ((0, 0, 0.2), (3, 3, 0.3), (3, 7, 0.1))]
    pairs.append((mutate(lam.tokens[5_000:7_000], 0.2, rng), lam.tokens[4_000:12_000]))  # infix
    for query, subject in pairs:
        exact = align.align_hit(query, subject).identity
        for t in (exact - 0.01, exact, exact + 0.01, 0.999):
            found = align.align_hit(query, subject, above=t)
            assert (found is None) == (exact <= t), (exact, t)
            if found is not None:
                assert found.identity == exact
    subjects = [g.tokens for g in genes] + [lam.tokens]
    for i, d in ((2, 0.1), (9, 0.3), (31, 0.2)):
        query = mutate(genes[i].tokens, d, rng)
        hits = [search.Hit(j, 0.0) for j in range(len(subjects))]
        full = rerank.rerank(query, hits, subjects.__getitem__, len(hits))
        bounded = rerank.rerank(query, hits, subjects.__getitem__, len(hits), keep=5)
        assert [(h.subject, h.identity) for h in bounded[:5]] == [(h.subject, h.identity) for h in full[:5]]
        assert full[0].subject == i
        assert sum(h.identity is None for h in bounded) > len(hits) // 2  # most could not beat the 5th best


def test_a_placement_gives_the_strand_its_span_would_choose() -> None:
    """Oriented.place counts the strand from the k-mers lying wholly in the span it returns: the same answer as
    Oriented.strand over that span, on subjects holding pieces of the query on both strands, N runs and spans cut
    at either end of the subject (a mutation counting k-mers past the span's ends fails it)."""
    rng = np.random.default_rng(3)
    for trial in range(40):
        query = rng.integers(FIRST_BASE, FIRST_BASE + 4, int(rng.integers(300, 1500))).astype(np.uint8)
        subject = rng.integers(FIRST_BASE, FIRST_BASE + 4, int(rng.integers(2_000, 9_000))).astype(np.uint8)
        for _ in range(3):  # pieces of the query, or of its reverse complement, at random places
            piece = query[: int(rng.integers(50, query.size))]
            piece = mutate(reverse_complement(piece) if rng.random() < 0.5 else piece, 0.05, rng)
            at = int(rng.integers(0, subject.size - piece.size))
            subject[at : at + piece.size] = piece
        subject[rng.integers(0, subject.size, 30)] = N
        oriented = align.Oriented(query)
        placed = oriented.place(subject, int(rng.integers(20, 300)))
        assert placed.strand == oriented.strand(subject[placed.start : placed.end]), trial
    # a near tie decided at the span's end: 3 forward k-mers and 2 reverse-complement ones inside it, and 2 more
    # reverse-complement ones that start inside but run past its end (not the span's own k-mers)
    query = rng.integers(FIRST_BASE, FIRST_BASE + 4, 500).astype(np.uint8)
    rc, subject = reverse_complement(query), np.full(4_000, N, np.uint8)
    subject[1_000:1_012] = query[100:112]  # diagonal 900: the span is 836 .. 900 + 500 + 64
    # (diagonals on the reverse strand 1100, 950 and 1355: no band of 64 holds more than 2 of them)
    subject[1_100:1_110], subject[1_250:1_260], subject[1_455:1_466] = rc[:10], rc[300:310], rc[100:111]
    oriented = align.Oriented(query)
    placed = oriented.place(subject, 64)
    assert (placed.shared, placed.start, placed.end) == (3, 836, 1_464)
    assert placed.strand == oriented.strand(subject[836:1_464]) == "+"


def test_a_short_query_is_aligned_where_its_kmers_place_it_in_a_long_record(lam) -> None:
    """A 2 kb piece (20 %, either strand) of the 48.5 kb lambda genome, re-ranked with no voted region, is aligned
    only over its own span and slack (not the whole genome), and finds the same span and identity as aligning it
    against the whole genome does."""
    rng = np.random.default_rng(7)
    subjects = [lam.tokens]
    for strand in "+-":
        piece = mutate(lam.tokens[31_000:33_000], 0.2, rng)
        query = piece if strand == "+" else reverse_complement(piece)
        oriented = align.Oriented(query)
        a, b, placed_strand = rerank._region(search.Hit(0, 0.0), lam.tokens.size, query.size, oriented, lam.tokens)
        assert a <= 31_000 and b >= 33_000 and b - a < 1.5 * query.size, (a, b)
        assert placed_strand == oriented.strand(lam.tokens[a:b]) == strand  # counted once, as the span's own k-mers
        whole = align.align_hit(query, lam.tokens, oriented=oriented)
        (hit,) = rerank.rerank(query, [search.Hit(0, 0.0)], subjects.__getitem__, 1)
        assert hit.strand == whole.strand == strand
        assert (hit.subject_start, hit.subject_end) == (whole.subject_start, whole.subject_end)
        assert abs(hit.identity - whole.identity) < 1e-9
    # a record sharing no 10-mer with the query (all N): nothing places it, so the whole record is aligned
    blank = np.full(20_000, N, np.uint8)
    query = mutate(lam.tokens[1_000:2_000], 0.1, rng)
    oriented = align.Oriented(query)
    assert oriented.place(blank, 64).shared == 0
    assert rerank._region(search.Hit(0, 0.0), blank.size, query.size, oriented, blank) == (0, blank.size, None)


def test_a_chance_alignment_heads_no_region_of_its_own() -> None:
    """regions_first: a 12-base match (e-value 7,350) past the end of the best hit's span follows the relatives
    aligned over the whole query; with a small e-value the same span is a region of its own and comes second."""
    from gene_ae.search.stats import Region

    def hit(subject: int, score: int, q: tuple[int, int], e: float) -> search.Hit:
        n = q[1] - q[0]
        local = Region(q[0], q[1], 0, n, n, n, 0, 0, 0, score, np.array([n]), np.zeros(1, np.int8))
        return search.Hit(subject, 0.0, 0.9, 0, 1, query_start=q[0], query_end=q[1], local=local, evalue=e)

    best, relative = hit(0, 900, (0, 2489), 0.0), hit(1, 800, (0, 2489), 0.0)
    chance = hit(2, 30, (2511, 2522), 7350.0)
    assert [h.subject for h in search.regions_first([best, relative, chance])] == [0, 1, 2]
    assert [h.subject for h in search.regions_first([best, relative, replace(chance, evalue=1e-5)])] == [0, 2, 1]


# --------------------------------------------------------------------------------------------- whole path


def test_index_holds_the_sequences_and_window_vectors(built, genes, lam) -> None:
    loaded, _, _ = built
    records = genes + [lam]
    assert len(loaded.sequences) == len(records) == len(loaded.meta.entries)
    for i in (0, 37, len(records) - 1):
        np.testing.assert_array_equal(loaded.sequences[i], records[i].tokens)
    assert loaded.meta.format == "gene-ae-index" and loaded.meta.sequences and loaded.meta.sparse
    shortest = embedding.BuildConfig().window_min  # shorter records have no windows: their vector and k-mers find them
    long_records = {i for i, r in enumerate(records) if r.tokens.size > WINDOW and r.tokens.size >= shortest}
    assert set(loaded.window_owner.tolist()) == long_records and len(records) - 1 in long_records
    assert loaded.windows.ntotal == loaded.window_owner.size
    lam_windows = loaded.window_owner == len(records) - 1
    assert loaded.window_end[lam_windows].max() == lam.tokens.size


def test_a_piece_of_a_genome_finds_it_with_its_region(built, lam, genes) -> None:
    loaded, embed, _ = built
    piece = mutate(lam.tokens[20_000:23_000], 0.2, np.random.default_rng(2))
    for sources in (("windows",), ("sparse",), search.SOURCES):
        cfg = search.SearchConfig(k=3, rerank=5, sources=sources)
        (top, *_), *_ = search.search(loaded, [piece], embed, cfg)
        assert top.subject == len(genes), sources
        assert abs(top.subject_start - 20_000) < 100 and abs(top.subject_end - 23_000) < 100, (sources, top)
        assert 0.7 < top.identity < 0.9


def test_fused_search_reranked_finds_far_copies(built, genes) -> None:
    loaded, embed, _ = built
    rng = np.random.default_rng(4)
    picks = [2, 9, 31, 44]
    queries = [mutate(genes[i].tokens, 0.3, rng) for i in picks]
    plain = search.search(loaded, queries, embed, search.SearchConfig(k=5, rerank=0))
    assert all(h.identity is None for hits in plain for h in hits)
    ranked = search.search(loaded, queries, embed, search.SearchConfig(k=5))
    assert [hits[0].subject for hits in ranked] == picks
    for hits in ranked:  # ordered as BLAST orders hits: by the local alignment's score
        scores = [h.local.score for h in hits]
        assert scores == sorted(scores, reverse=True) and 0.6 < hits[0].identity < 0.8


def test_a_remote_query_goes_deep_and_a_close_one_does_not(built, genes) -> None:
    """A query whose best aligned candidate is below deep_below aligns the top `deep` candidates (the same hits as
    a search aligning that many); one with a close candidate aligns only `rerank` (the same hits as deep off)."""
    loaded, embed, _ = built
    rng = np.random.default_rng(5)
    remote, close = mutate(genes[7].tokens, 0.3, rng), mutate(genes[7].tokens, 0.05, rng)
    one = search.SearchConfig(k=5, rerank=1, deep=0, trace=False, deep_pool=0)  # the first `deep` by k-mers
    for query, below, same_as in [(remote, 0.9, 30), (close, 0.9, 1), (remote, 0.1, 1)]:
        got = search.search(loaded, [query], embed, replace(one, deep=30, deep_below=below))[0]
        want = search.search(loaded, [query], embed, replace(one, rerank=same_as))[0]
        assert [(h.subject, h.identity) for h in got] == [(h.subject, h.identity) for h in want], (below, same_as)
    deep = search.search(loaded, [remote], embed, replace(one, deep=30, deep_below=0.9))[0]
    assert sum(h.identity is not None for h in deep) == 5 and deep[0].subject == 7
    shallow = search.search(loaded, [remote], embed, one)[0]
    assert sum(h.identity is not None for h in shallow) == 1
    # deep_flat: deep only where the k-mer list is flat at `rerank` (its 3rd score at least that share of its 1st)
    votes = search.search(loaded, [remote], embed, replace(one, rerank=0, k=3))[0]
    ratio = votes[2].score / votes[0].score
    three = replace(one, rerank=3, deep=30, deep_below=0.9)
    aligned = [sum(h.identity is not None for h in search.search(loaded, [remote], embed, replace(one, rerank=r))[0])
               for r in (3, 30)]  # fmt: skip
    assert aligned == [3, 5]  # the two outcomes differ
    for flat, same_as in [(ratio - 1e-6, 30), (ratio + 1e-6, 3)]:
        got = search.search(loaded, [remote], embed, replace(three, deep_flat=flat))[0]
        want = search.search(loaded, [remote], embed, replace(one, rerank=same_as))[0]
        assert [(h.subject, h.identity) for h in got] == [(h.subject, h.identity) for h in want], flat


def test_a_remote_query_reports_the_best_scores_among_its_deep_trace_by_identity(built, genes) -> None:
    """deep_trace N: a remote query's best N by identity are traced and the k reported are the best of those by
    the local alignment's score (blastn's order), not the best k by identity re-ordered; a close query reports as
    without it."""
    loaded, embed, _ = built
    rng = np.random.default_rng(5)
    remote, close = mutate(genes[7].tokens, 0.3, rng), mutate(genes[7].tokens, 0.05, rng)
    base = search.SearchConfig(k=3, rerank=30, deep=0, deep_below=0.9, deep_trace=0)
    # the best 30 by identity, traced and ordered as reported (by score, each region's best first): its first 3
    best = search.search(loaded, [remote], embed, replace(base, k=30))[0][:3]
    got = search.search(loaded, [remote], embed, replace(base, deep_trace=30))[0]
    assert [(h.subject, h.local.score) for h in got] == [(h.subject, h.local.score) for h in best]
    plain = search.search(loaded, [remote], embed, base)[0]
    assert [h.subject for h in plain] != [h.subject for h in got]  # the option changes what is reported here
    near = [search.search(loaded, [close], embed, replace(base, deep_trace=t))[0] for t in (0, 30)]
    assert [h.subject for h in near[0]] == [h.subject for h in near[1]]


def _decoyed(tmp_path: Path, encoder: Encoder, divergence: float, seed: int) -> tuple[IndexDir, Embed, np.ndarray]:
    """(index, embed, query): a 1.5 kb record (position 12) and a copy of it mutated `divergence` (the query),
    indexed beside 12 decoys made of the copy's own 10-base pieces out of order (its k-mer composition)."""
    rng = np.random.default_rng(seed)
    source = rng.integers(FIRST_BASE, FIRST_BASE + 4, 1500).astype(np.uint8)
    query = mutate(source, divergence, rng)
    pieces = np.array_split(query, query.size // 10)
    decoys = [np.concatenate([pieces[i] for i in rng.permutation(len(pieces))]) for _ in range(12)]
    records = [InputRecord(f"d{i}", d) for i, d in enumerate(decoys)] + [InputRecord("source", source)]
    embed = partial(embedding.embed_local, encoder, batch_size=64)
    model = embedding.ModelInfo(uri="mem", version="", dim=64, window=WINDOW)
    embedding.build_index(iter(records), embed, model, tmp_path / "idx", embedding.BuildConfig())
    return IndexDir.open(tmp_path / "idx"), embed, query


def test_a_remote_querys_deep_candidates_are_picked_by_co_linear_matches(tmp_path, encoder) -> None:
    """A 30 % copy's source shares ~3 % of the copy's 10-mers: records holding the copy's own 10-base pieces out of
    order share more (one in ten) and rank above it by k-mers, past `deep`. deep_pool picks the deep candidates from
    more of the list by co-linear 8-mers: the source is aligned and reported first; without it, not aligned."""
    loaded, embed, query = _decoyed(tmp_path, encoder, 0.3, 3)
    by_kmers = search.search(loaded, [query], embed, search.SearchConfig(k=13, rerank=0))[0]
    assert [h.subject for h in by_kmers].index(12) >= 4  # the source ranks below `deep` by k-mers
    cfg = search.SearchConfig(k=3, rerank=2, deep=4, deep_pool=0, trace=False)
    without = search.search(loaded, [query], embed, cfg)[0]
    assert 12 not in [h.subject for h in without if h.identity is not None]
    pooled = search.search(loaded, [query], embed, replace(cfg, deep_pool=100))[0]
    assert pooled[0].subject == 12 and pooled[0].identity > without[0].identity
    assert sum(h.identity is not None for h in pooled) == 3  # `deep` aligned, as without the pool
    # a pool no longer than the list the shards give anyway (depth: 50) is that list, ordered the same way
    listed = search.search(loaded, [query], embed, replace(cfg, deep_pool=40))[0]
    assert [(h.subject, h.identity) for h in listed] == [(h.subject, h.identity) for h in pooled]
    # --vote-floor: a candidate under the floor is neither aligned nor reported, the pool's too
    floor = by_kmers[[h.subject for h in by_kmers].index(12)].score / by_kmers[0].score + 0.01
    floored = search.search(loaded, [query], embed, replace(cfg, deep_pool=100, vote_floor=floor))[0]
    assert 12 not in [h.subject for h in floored]


def test_a_vector_first_search_aligns_its_pool_in_the_order_of_co_linear_matches(tmp_path, encoder) -> None:
    """--sources dense (the vectors alone): records made of a 20 % copy's own 10-base pieces out of order have its
    k-mer composition, so their vectors rank above the source's; the vectors' first deep_pool are ordered by
    co-linear 8-mers before any is aligned, and the source is aligned and reported first. Without a pool (or
    without alignment) the vectors' order stands and the source is not aligned."""
    loaded, embed, query = _decoyed(tmp_path, encoder, 0.2, 4)
    cfg = search.SearchConfig(k=3, rerank=2, deep=4, trace=False, sources=("dense",))
    by_vectors = search.search(loaded, [query], embed, replace(cfg, k=13, rerank=0))[0]
    assert [h.subject for h in by_vectors].index(12) >= 4  # the source ranks below `deep` by its vector
    assert search.vector_first(cfg) and search.depth(cfg) == cfg.deep_pool
    assert not search.vector_first(replace(cfg, sources=("dense", "sparse"))) and not search.vector_first(
        replace(cfg, rerank=0))  # fmt: skip
    without = search.search(loaded, [query], embed, replace(cfg, deep_pool=0))[0]
    assert 12 not in [h.subject for h in without if h.identity is not None]
    first = search.search(loaded, [query], embed, cfg)[0]
    assert first[0].subject == 12 and first[0].identity > without[0].identity


@pytest.mark.parametrize("codec,ratio", [("f16", 0.5), ("sq8", 0.25)])
def test_compact_vector_codecs_store_less_and_find_the_same_nearest(tmp_path, encoder, genes, codec, ratio) -> None:
    """float16 and 8-bit vectors: index files about half and a quarter of float32's, the same nearest record
    for exact and 5 %-mutated copies, cosines within the codec's error, and filters still apply."""
    embed = partial(embedding.embed_local, encoder, batch_size=64)
    model = embedding.ModelInfo(uri="mem", version="", dim=64, window=WINDOW)
    sizes, found = {}, {}
    rng = np.random.default_rng(2)
    queries = [g.tokens for g in genes[:10]] + [mutate(g.tokens, 0.05, rng) for g in genes[10:20]]
    for c in ("f32", codec):
        out = tmp_path / c
        embedding.build_index(iter(genes), embed, model, out, embedding.BuildConfig(kind="flat", codec=c))
        opened = IndexDir.open(out)
        sizes[c] = (out / "index.faiss").stat().st_size + (out / "windows.faiss").stat().st_size
        found[c] = search.search(opened, queries, embed, search.SearchConfig(k=3, rerank=0, sources=("dense",)))
        allowed = np.zeros(len(genes), bool)
        allowed[::2] = True
        kept = search.search(opened, queries, embed, search.SearchConfig(k=3, rerank=0), allowed=allowed)
        assert all(h.subject % 2 == 0 for hits in kept for h in hits)
    assert sizes[codec] < (ratio + 0.08) * sizes["f32"]
    assert [h[0].subject for h in found[codec]] == [h[0].subject for h in found["f32"]] == list(range(20))
    sims = [[h.similarity for h in hits] for hits in found[codec]]
    want = [[h.similarity for h in hits] for hits in found["f32"]]
    np.testing.assert_allclose(sims, want, atol=0.02)
    assert max(max(row) for row in sims) <= 1.0  # quantised codes never report a cosine above 1


def test_pq64_vectors_take_64_bytes_a_record_and_find_exact_copies(monkeypatch) -> None:
    """--vector-codec pq64: 64 bytes a record vector from PQ_MIN vectors on (flat or IVF), exact copies still
    nearest, a filter (--where) applies to the PQ scan as to an exact one; fewer vectors keep 8-bit values."""
    import faiss

    monkeypatch.setattr(vectors, "PQ_MIN", 1000)  # training 256 codes a sub-vector on 9,984 vectors takes 12 s
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # OpenMP's spinning threads took 30 s beside other processes on 2 cores
    rng = np.random.default_rng(0)
    try:
        x = rng.standard_normal((1100, 128)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        allowed = np.arange(1, len(x), 2)
        for kind in ("flat", "ivf"):
            index, _ = vectors.build_faiss(x, kind, "pq64")
            assert index.code_size == vectors.PQ_BYTES and index.ntotal == len(x)
            idx, _ = vectors.search(index, x[:20], 1)
            assert (idx[:, 0] == np.arange(20)).sum() >= 19, kind
            kept, _ = vectors.search(index, x[:20], 3, ids=allowed)
            assert (kept % 2 == 1).all(), kind
            again = vectors.requantised(index, x[:5])
            np.testing.assert_allclose(again, vectors.reconstruct(index, np.arange(5)), atol=1e-5)
        small, _ = vectors.build_faiss(x[:500], "flat", "pq64")
        assert small.code_size == 128  # 8 bits a value below PQ_MIN
        graph, kind = vectors.build_faiss(x[:300], "hnsw", "pq64")
        assert kind == "hnsw" and graph.ntotal == 300  # HNSW keeps float32 whatever the codec
    finally:
        faiss.omp_set_num_threads(threads)


def test_a_vote_floor_neither_aligns_nor_reports_chance_candidates(built, genes) -> None:
    """--vote-floor F: a gene query's candidates whose k-mer score is under F of the best share no more k-mers
    than chance; they are not aligned and not reported (fewer than -k hits, as blastn gives). 0, the default: -k."""
    loaded, embed, _ = built
    queries = [mutate(genes[i].tokens, 0.1, np.random.default_rng(i)) for i in (5, 17)]
    every = search.search(loaded, queries, embed, search.SearchConfig(k=5))
    floored = search.search(loaded, queries, embed, search.SearchConfig(k=5, vote_floor=0.1))
    for i, all_hits, kept in zip((5, 17), every, floored):
        assert len(all_hits) == 5 and all_hits[0].subject == kept[0].subject == i, (all_hits, kept)
        assert kept[0].identity == all_hits[0].identity and kept[0].local.score == all_hits[0].local.score
        assert 1 <= len(kept) < 5 and all(h.score >= 0.1 * kept[0].score for h in kept), kept
        assert min(h.score for h in all_hits) < 0.1 * all_hits[0].score  # what the floor left out was chance


def test_the_query_check_of_a_long_query_takes_memory_of_a_piece_not_of_its_kmers(built) -> None:
    """The check that a query holds a k-mer of real bases coded every k-mer of it at once: a 256 Mb query took
    gigabytes there, before the search began. Now it looks a piece at a time, and answers as before."""
    import tracemalloc

    from gene_ae.search import checks

    opened = built[0]
    k = opened.kmers.cfg.k
    long = InputRecord("long", np.tile(np.asarray([1, 2, 3, 4], np.uint8) + (FIRST_BASE - 1), 2_000_000))
    tracemalloc.start()
    try:
        checks.check_queries(opened, [long], "q.fa")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 48 << 20, f"{peak / 2**20:.1f} MiB"  # coding every k-mer of 8 Mb: over 200 MiB
    n = np.full(5000, FIRST_BASE + 4, np.uint8)  # N
    gappy = n.copy()
    gappy[2000 : 2000 + k - 1] = FIRST_BASE  # one base short of a k-mer
    with pytest.raises(ValueError, match=f"no {k} consecutive A/C/G/T bases"):
        checks.check_queries(opened, [InputRecord("gappy", gappy)], "q.fa")
    gappy[2000 + k - 1] = FIRST_BASE + 2
    checks.check_queries(opened, [InputRecord("gappy", gappy)], "q.fa")


def test_an_infix_alignment_has_the_span_edlibs_locations_task_gives() -> None:
    """align._infix asks edlib for the distance and finds the start of its first end only (edlib's "locations"
    task finds one for every end, 3x the cost on a 3 kb copy 30 % off): spans and identities must be edlib's own,
    with and without a bound, for copies near and far, random sequences, and infixes shorter than the query."""
    import edlib

    from gene_ae.search.align import _infix

    rng = np.random.default_rng(4)
    bases = lambda n: rng.integers(FIRST_BASE, FIRST_BASE + 4, n).astype(np.uint8)  # noqa: E731
    checked = 0
    for _ in range(300):
        source = bases(int(rng.integers(20, 1500)))
        region = np.concatenate([bases(int(rng.integers(0, 300))), mutate(source, rng.uniform(0, 0.1), rng),
                                 bases(int(rng.integers(0, 300)))])  # fmt: skip
        query = mutate(source, rng.uniform(0, 0.4), rng) if rng.random() < 0.9 else bases(source.size)
        above = float(rng.uniform(0.3, 0.9)) if rng.random() < 0.5 else 0.0
        found = _infix(query, region, 7, above)
        inner, outer = (query, region) if query.size <= region.size else (region, query)
        k = int(np.ceil(inner.size - above * query.size - 1e-9)) - 1 if above > 0 else -1
        want = edlib.align(inner.tobytes(), outer.tobytes(), mode="HW", task="locations", k=k) if k >= 0 or not above \
            else {"editDistance": -1}  # fmt: skip
        if want["editDistance"] < 0:
            assert found is None
            continue
        start, end = want["locations"][0]
        spans = (
            (found.subject_start - 7, found.subject_end - 7) if inner is query else (found.query_start, found.query_end)
        )
        assert spans == (start, end + 1)
        assert found.identity == max(0.0, inner.size - want["editDistance"]) / query.size
        checked += 1
    assert checked > 150
