"""The k-mer index on disk: nibble-varint postings (a count as repeats), searched memory-mapped, as cosine."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

from gene_ae.core.kmers import kmer_counts, l2_rows
from gene_ae.index.kmer_index import KmerIndex, KmerIndexConfig
from gene_ae.index.postings import Postings


def _reference_decode(stream: np.ndarray, ptr: np.ndarray, row: int) -> list[int]:
    """The format as postings.c documents it, read in Python: nibble i is byte i // 2's high half when i is
    even; 3-bit groups most significant first, high bit set while another follows; gaps summed from 0."""
    out, segment, v = [], 0, 0
    for i in range(int(ptr[row]), int(ptr[row + 1])):
        x = (int(stream[i // 2]) >> (4 if i % 2 == 0 else 0)) & 15
        v = (v << 3) | (x & 7)
        if not x & 8:
            segment += v
            out.append(segment)
            v = 0
    return out


def _reference_runs(stream: np.ndarray, ptr: np.ndarray, row: int) -> list[int]:
    """The runs layout as postings.c documents it, read in Python: the same varints, counted from -1; 0 repeats
    the segment before, odd x is a gap of (x + 1) / 2, even x a run of x / 2 + 1 segments. Stored positions."""
    out, segment, v = [], -1, 0
    for i in range(int(ptr[row]), int(ptr[row + 1])):
        x = (int(stream[i // 2]) >> (4 if i % 2 == 0 else 0)) & 15
        v = (v << 3) | (x & 7)
        if not x & 8:
            if v == 0:
                out.append(segment)
            elif v % 2:
                segment += (v + 1) // 2
                out.append(segment)
            else:
                out += list(range(segment + 1, segment + v // 2 + 2))
                segment += v // 2 + 1
            v = 0
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("runs", [False, True])
def test_postings_round_trip_on_random_rows_with_counts(seed, runs):
    """Random rows (empty ones, gaps of every size, segment 0 first, runs of neighbours, counts over 1) decode as
    written, in C and by the documented layout read in Python; a count c lists its segment c times. With runs
    the segments are stored in a random order and come back as the segments they are."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice([0, 0, 1, 3, 40], size=60)
    rows = [np.sort(rng.choice(3_000_000, size=n, replace=False)) for n in lengths]
    # the first segment 0; a run of 3, gaps of 7, 55 and over 2^21, a run of 12 broken by a count over 1
    rows[1] = np.array([0, 1, 2, 9, 64, *range(100, 112), 2_999_999])
    rows[2] = np.arange(32)  # one run from segment 0
    lengths[1], lengths[2] = rows[1].size, rows[2].size
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([np.zeros(0, np.int64), *rows])
    counts = np.where(rng.random(indices.size) < 0.1, rng.integers(2, 300, indices.size), 1)
    counts[indptr[1] + 10] = 3  # inside row 1's run of 12
    counts[indptr[2] : indptr[3]] = 1
    stored = rng.permutation(3_000_000).astype(np.int32) if runs else None
    lists = Postings.encode(indptr, indices, counts, 3_000_000, stored)
    as_stored = [np.repeat(indices[a:b], counts[a:b]) for a, b in zip(indptr[:-1], indptr[1:])]
    expected = [stored[x] for x in as_stored] if runs else as_stored
    reference = _reference_runs if runs else _reference_decode
    if runs:
        assert lists.ptr[3] - lists.ptr[2] == 2  # the run of 32 is one token: 62, octal 76, two nibbles
    order = rng.permutation(60)
    segments, lens = lists.segments(order, "test")
    np.testing.assert_array_equal(segments, np.concatenate([expected[r] for r in order]))
    assert lens.tolist() == [expected[r].size for r in order]
    for r in range(60):
        assert reference(lists.stream, lists.ptr, r) == as_stored[r].tolist()
    weights = rng.random(60)
    summed = lists.accumulate(np.arange(60), weights, "test")
    touched = np.unique(np.concatenate(expected))
    want_t = np.array([sum(weights[r] * np.count_nonzero(expected[r] == t) for r in range(60)) for t in touched])
    np.testing.assert_allclose(summed[touched], want_t)
    assert summed.sum() == pytest.approx(want_t.sum())


@pytest.mark.parametrize("runs", [False, True])
def test_mapped_postings_read_only_the_rows_asked_and_the_file_they_were_mapped_from(tmp_path, monkeypatch, runs):
    """A stream mapped from its file is searched from the rows read out of it (postings.c's postings_read: each row
    from the byte of its first nibble, odd starts included, a read a row or rows close together read as one, a row
    asked twice), to the same sums and segments as the stream in memory; with a read too large for a buffer, through
    the map alike; and from the file it was mapped from even after another file took its name (an index rebuilt over
    it while a search holds it open)."""
    import gene_ae.index.postings as postings_module

    rng = np.random.default_rng(7)
    lengths = rng.choice([0, 1, 2, 5, 30], size=80)
    rows = [np.sort(rng.choice(50_000, size=n, replace=False)) for n in lengths]
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([np.zeros(0, np.int64), *rows])
    counts = np.where(rng.random(indices.size) < 0.2, 2, 1)
    order = rng.permutation(50_000).astype(np.int32) if runs else None
    memory = Postings.encode(indptr, indices, counts, 50_000, order)
    assert (memory.ptr[:-1] % 2 == 1).any()  # some rows start inside a byte
    np.save(tmp_path / "p.npy", memory.stream)
    mapped = Postings(np.load(tmp_path / "p.npy", mmap_mode="r"), memory.ptr, 50_000, order)
    asked, weights = rng.permutation(80)[:50], rng.random(50)
    asked[-1] = asked[0]  # a row asked twice
    monkeypatch.setattr(postings_module, "READ_GAP", 0)
    stream, _, _ = mapped._gather(asked.astype(np.int64), "test")
    assert not isinstance(stream, np.memmap) and stream.size < memory.stream.size  # only the rows asked were read
    want_sums, want_segments = memory.accumulate(asked, weights, "test"), memory.segments(asked, "test")
    np.save(tmp_path / "other.npy", np.zeros_like(memory.stream))
    (tmp_path / "other.npy").replace(tmp_path / "p.npy")
    # to another process (a Ray task's result): the stream's bytes go, not the descriptor, which means nothing there
    (tmp_path / "lists.pkl").write_bytes(pickle.dumps((mapped, asked, weights)))
    child = ("import pickle, sys, numpy as np; lists, asked, w = pickle.loads(open(sys.argv[1], 'rb').read()); "
             "np.save(sys.argv[2], lists.accumulate(asked, w, 'test'))")  # fmt: skip
    subprocess.run([sys.executable, "-c", child, tmp_path / "lists.pkl", tmp_path / "sums.npy"], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "sums.npy"), want_sums)
    for gap, cap in ((0, postings_module.GATHER_BYTES), (7, postings_module.GATHER_BYTES), (4096, 1 << 26), (0, 0)):
        monkeypatch.setattr(postings_module, "READ_GAP", gap)  # a read a row, rows a few bytes apart read as one
        monkeypatch.setattr(postings_module, "GATHER_BYTES", cap)  # through the map
        np.testing.assert_array_equal(mapped.accumulate(asked, weights, "test"), want_sums)
        for got, want in zip(mapped.segments(asked, "test"), want_segments):
            np.testing.assert_array_equal(got, want)
        # read once for several pieces (a long query's): the union of theirs, any order, repeats
        shared = mapped.gather(np.concatenate([asked[::-1], rng.permutation(80)[:20], asked[:5]]), "test")
        np.testing.assert_array_equal(mapped.accumulate(asked, weights, "test", shared), want_sums)
        np.testing.assert_array_equal(mapped.accumulate(asked[:7], weights[:7], "test", shared),
                                      memory.accumulate(asked[:7], weights[:7], "test"))  # fmt: skip
    with pytest.raises(ValueError, match="did not read it"):
        mapped.accumulate(asked, weights, "test", mapped.gather(asked[1:-1], "test"))


def test_postings_that_do_not_increase_are_refused():
    with pytest.raises(ValueError, match="do not increase"):
        Postings.encode(np.array([0, 2]), np.array([5, 5]), np.array([1, 1]), 10)


def test_relatives_stored_as_neighbours_make_the_postings_smaller_and_search_the_same(tmp_path):
    """Families of near copies added in a shuffled order: the builder stores each family's segments side by side
    (MinHash order, then bisection) and writes their gaps as runs, so the postings shrink; the order and runs
    survive save and load, and every search gives what the same index without them gives."""
    from gene_ae.core.mutate import mutate

    rng = np.random.default_rng(3)
    roots = [rng.integers(3, 7, size=1500).astype(np.uint8) for _ in range(30)]
    seqs = [mutate(roots[i % 30], 0.02, rng) for i in rng.permutation(300)]
    built = KmerIndex.build(seqs, KmerIndexConfig(k=10))
    assert built.lists.order is not None
    plain = Postings.encode(*_segments_csr(built), built.n_segments)  # the same postings in record order, no runs
    assert built.lists.stream.nbytes < 0.8 * plain.stream.nbytes  # 0.60 (the copies' own k-mers are alone)
    built.save(tmp_path)
    again = KmerIndex.load(tmp_path)
    np.testing.assert_array_equal(again.lists.order, built.lists.order)
    queries = [mutate(roots[i], 0.1, rng) for i in range(5)] + [seqs[7]]
    legacy = KmerIndex(built.cfg, plain, built.owner, built.start, built.end, built.scale)
    for a, b in zip(again.search_segments(queries, 20), legacy.search_segments(queries, 20)):
        np.testing.assert_array_equal(a, b)
    # a damaged order (a position past the segments) is one line, not a read out of bounds
    with np.load(tmp_path / KmerIndex.FILE) as z:
        parts = {n: z[n] for n in z.files}
    parts["order"] = parts["order"] + 1
    np.savez(tmp_path / KmerIndex.FILE, **parts)
    with pytest.raises(ValueError, match="segment order"):
        KmerIndex.load(tmp_path)


def test_bisection_stores_families_side_by_side_from_any_start():
    """Recursive graph bisection (gene_ae/index/order.py) from a shuffled order of families of families: a
    permutation of the segments whose postings (with runs) are under 0.65x the shuffled order's (0.58) and under
    the MinHash order's (0.90 of it); the builder's order is a permutation too. A bisection that swapped nothing,
    or swapped by the wrong sign of the gain, fails it."""
    from gene_ae.core.kmers import kmer_counts
    from gene_ae.core.mutate import mutate
    from gene_ae.index.kmer_index import inverted as transposed
    from gene_ae.index.order import OrderConfig, bisection_order, minhash_keys, minhash_order, neighbour_order

    rng = np.random.default_rng(5)
    roots = [rng.integers(3, 7, size=1500).astype(np.uint8) for _ in range(6)]
    kin = [mutate(r, 0.1, rng) for r in roots for _ in range(4)]
    counts = kmer_counts([mutate(kin[i % 24], 0.02, rng) for i in rng.permutation(240)], 10)
    inverted = counts.T.tocsr()

    def size(order: np.ndarray) -> int:
        return Postings.size(*transposed(counts, order), True)

    shuffled = rng.permutation(240).astype(np.int32)
    placing = counts[:, np.flatnonzero(np.diff(inverted.indptr) >= 2)]
    bisected = bisection_order(placing.indptr, placing.indices, shuffled, OrderConfig(leaf=8))
    assert sorted(bisected.tolist()) == list(range(240))
    assert size(bisected) < 0.65 * size(shuffled)
    assert size(bisected) < size(minhash_order(minhash_keys(counts)))
    built = neighbour_order(counts, np.diff(inverted.indptr), minhash_keys(counts))
    assert sorted(built.tolist()) == list(range(240))


def test_an_index_without_k_mers_stores_records_with_near_vectors_side_by_side():
    """vector_order (the sequences' order of `gene-ae embed --no-kmers`): eight clusters of vectors, shuffled,
    come back as a permutation with each cluster in at most a few runs (at most 16 changes of cluster along the
    order, against ~280 shuffled), the same order twice. An order that ignored the vectors fails it."""
    from gene_ae.index.order import vector_order

    rng = np.random.default_rng(3)
    centres = rng.standard_normal((8, 32))
    labels = rng.permutation(np.repeat(np.arange(8), 40))
    x = (centres[labels] + 0.2 * rng.standard_normal((320, 32))).astype(np.float32)
    order = vector_order(x)
    assert sorted(order.tolist()) == list(range(320))
    assert np.count_nonzero(np.diff(labels[order])) <= 16 < np.count_nonzero(np.diff(labels))
    assert np.array_equal(order, vector_order(x))
    assert vector_order(np.zeros((0, 32), np.float32)).size == 0


def test_where_runs_do_not_pay_the_segments_keep_their_own_order_and_plain_gaps():
    """Unrelated records (neighbours in any order share only chance k-mers): the runs code's plain gaps cost more
    than plain gaps (a nibble holds a gap up to 4, not 7), so the builder keeps record order and the plain code."""
    rng = np.random.default_rng(5)
    seqs = [rng.integers(3, 7, size=1500).astype(np.uint8) for _ in range(300)]
    built = KmerIndex.build(seqs, KmerIndexConfig(k=10))
    assert built.lists.order is None
    indptr, indices, counts = _segments_csr(built)
    assert int(built.lists.ptr[-1]) == Postings.size(indptr, indices, counts)  # the plain code, in record order
    assert Postings.size(indptr, indices, counts, runs=True) > Postings.size(indptr, indices, counts)


def _segments_csr(index: KmerIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, segment indices, counts) of every k-mer row of an index, in segment order."""
    held = np.flatnonzero(np.diff(index.lists.ptr))  # rows with postings (decoding each row is one C call)
    segments, lens = index.postings(held)
    n = index.n_segments
    keys, counts = np.unique(np.repeat(held, lens) * n + segments, return_counts=True)
    indptr = np.searchsorted(keys // n, np.arange(index.lists.ptr.size))
    return indptr, keys % n, counts


def test_gaps_of_one_cost_half_a_byte():
    """Neighbouring records share k-mers (40 % of gaps are 1 on SILVA): such a row costs a nibble a posting."""
    lists = Postings.encode(np.array([0, 1000]), np.arange(1000), np.ones(1000), 1000)
    assert lists.stream.nbytes == 500


def test_postings_load_mapped_and_search_as_the_cosine_of_counts(tmp_path):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(3, 8, size=n).astype(np.uint8) for n in rng.integers(20, 3000, size=200)]
    seqs.append(np.full(2000, 3, np.uint8))  # one k-mer counted 1,991 times
    idx = KmerIndex.build(seqs, KmerIndexConfig())
    idx.save(tmp_path)
    again = KmerIndex.load(tmp_path)
    assert isinstance(again.lists.stream, np.memmap) and again.lists.stream.dtype == np.uint8
    queries = [seqs[3], seqs[50][100:900], seqs[-1]]
    found, sims = again.search_segments(queries, 5)
    for a, b in zip((found, sims), idx.search_segments(queries, 5)):
        np.testing.assert_array_equal(a, b)
    for j, query in enumerate(queries):  # together their postings were read in one gather; alone, each its own
        alone = again.search_segments([query], 5)
        np.testing.assert_array_equal(alone[0][0], found[j])
        np.testing.assert_array_equal(alone[1][0], sims[j])
    # the same scores as cosine over the whole count matrix (scipy), the definition
    counts = kmer_counts(seqs, again.cfg.k, buckets=again.cfg.buckets)
    cosine = (l2_rows(kmer_counts(queries, again.cfg.k, buckets=again.cfg.buckets)) @ l2_rows(counts).T).toarray()
    hit = found >= 0  # the poly-A record shares its one k-mer with no other
    np.testing.assert_allclose(sims[hit], np.take_along_axis(cosine, found, 1)[hit], rtol=1e-5)
    assert (found[:, 0] == [3, 50, 200]).all() and hit.sum() == 11 and (sims[~hit] == 0).all()
    allowed = np.ones(len(seqs), bool)
    allowed[[3, 50]] = False
    masked, _ = again.search_segments(queries, 5, allowed)
    assert not np.isin(masked, [3, 50]).any() and masked[2, 0] == 200


def test_saving_over_its_own_mapped_files_keeps_them(tmp_path):
    seqs = [np.random.default_rng(1).integers(3, 7, size=2000).astype(np.uint8)]
    KmerIndex.build(seqs, KmerIndexConfig()).save(tmp_path)
    again = KmerIndex.load(tmp_path)
    again.save(tmp_path)  # its postings are mapped from these very files
    found, _ = KmerIndex.load(tmp_path).search_segments(seqs, 1)
    assert found[0, 0] == 0


@pytest.mark.parametrize("damage", ["dtype", "pointers", "pointer type", "length"])
def test_postings_of_another_type_or_out_of_order_are_refused_on_load(tmp_path, damage):
    seq = np.concatenate([np.arange(3, 7, dtype=np.uint8).repeat(300), np.tile(np.arange(3, 7, dtype=np.uint8), 30)])
    KmerIndex.build([seq], KmerIndexConfig()).save(tmp_path)
    z = dict(np.load(tmp_path / KmerIndex.FILE))
    stream = np.load(tmp_path / KmerIndex.POSTINGS_FILE)
    if damage == "dtype":
        np.save(tmp_path / KmerIndex.POSTINGS_FILE, stream.astype(np.float32))
    elif damage == "pointers":  # a row a byte longer: the rows then pass the stream
        z["rows"] = z["rows"].copy()
        z["rows"][int(np.flatnonzero(z["rows"] < 200)[0])] += 2
    elif damage == "pointer type":
        z["rows"] = z["rows"].astype(np.float64)
    else:
        np.save(tmp_path / KmerIndex.POSTINGS_FILE, stream[:-1])
    np.savez(tmp_path / KmerIndex.FILE, **z)
    with pytest.raises(ValueError, match="not a readable k-mer index"):
        KmerIndex.load(tmp_path)


def test_row_pointers_out_of_order_are_refused_by_the_search_that_reads_them(tmp_path):
    """An index of format 7 or before stores the row pointers themselves, and only the first is checked on load (a
    pass over every pointer cost 11 ms an open at 10^5 genes): a row whose pointers are out of order or past the
    stream is refused when a search reads it. (Since v8 the rows' lengths are stored, which cannot be out of order,
    and their sum is checked against the stream on load.)"""
    seq = np.random.default_rng(2).integers(3, 7, size=3000).astype(np.uint8)
    built = KmerIndex.build([seq], KmerIndexConfig())
    built.save(tmp_path)
    z = {k: v for k, v in np.load(tmp_path / KmerIndex.FILE).items() if k not in ("rows", "long_rows")}
    ptr = built.lists.ptr.copy()
    row = int(np.flatnonzero(np.diff(ptr) > 0)[0])  # a row holding postings: its end pointer now before its start
    ptr[row + 1] = ptr[row] - 1 if ptr[row] > 0 else ptr[-1] + 10
    z["ptr"] = ptr
    np.savez(tmp_path / KmerIndex.FILE, **z)
    damaged = KmerIndex.load(tmp_path)
    with pytest.raises(ValueError, match="damaged k-mer postings"):
        damaged.search_segments([seq], 1)


@pytest.mark.parametrize("runs", [False, True])
def test_random_bytes_as_postings_are_damaged_or_read_in_range_never_past_it(runs):
    """Any stream (random nibbles: gaps past the segments, runs running past them, a repeat of nothing first)
    either reads every posting inside the segments or is refused as damaged: the C loop never writes or reads
    outside the scores or the order."""
    rng = np.random.default_rng(9)
    n = 50
    order = rng.permutation(n).astype(np.int32) if runs else None
    refused = 0
    for _ in range(300):
        stream = rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8)
        ptr = np.array([0, 2 * stream.size], np.int64)
        lists = Postings(stream, ptr, n, order)
        try:
            summed = lists.accumulate(np.array([0]), np.array([1.0]), "fuzz")
            segments, _ = lists.segments(np.array([0]), "fuzz")
        except ValueError as exc:
            assert "damaged k-mer postings" in str(exc)
            refused += 1
            continue
        assert summed.shape == (n,) and ((segments >= 0) & (segments < n)).all()
        assert summed.sum() == segments.size
    assert 0 < refused < 300


def test_a_varint_longer_than_64_bits_is_read_alike_by_the_sum_and_the_decoder():
    """The summing loop (accumulate) reads a row as the decoder (segments) does, a varint of 22 groups whose value
    wraps past 64 bits included: one loop refusing what the other reads would make `gene-ae verify` (which sums
    every row) and search disagree."""
    nibbles = [9] + [8] * 21 + [1]
    stream = np.zeros((len(nibbles) + 1) // 2, np.uint8)
    for i, x in enumerate(nibbles):
        stream[i // 2] |= x << (4 if i % 2 == 0 else 0)
    lists = Postings(stream, np.array([0, len(nibbles)], np.int64), 50)
    segments, _ = lists.segments(np.array([0]), "wrap")
    summed = lists.accumulate(np.array([0]), np.array([1.0]), "wrap")
    np.testing.assert_array_equal(np.flatnonzero(summed), segments)


def test_a_native_library_without_a_function_asked_of_it_says_to_rebuild():
    """A library built from an older postings.c (an editable install not rebuilt after a pull) lacks a function or
    reports another version: one ImportError saying how to rebuild, not a call with the wrong arguments."""
    from gene_ae.core.native import I32, load
    from gene_ae.index import postings

    with pytest.raises(ImportError, match=r"no postings_from_the_future: .* run `pip install -e \.`"):
        load("gene_ae.index._postings", "gene_ae/index/postings.c", {"postings_from_the_future": ((), I32)})
    assert postings._lib().postings_abi() == postings.ABI


def test_the_records_are_given_in_their_segments_minhash_order_for_the_sequences():
    """The builder hands `gene-ae embed` the records in the segments' stored order (each record once, where its
    first segment is), so the sequence store writes relatives side by side: shuffled families come out grouped."""
    from gene_ae.core.mutate import mutate
    from gene_ae.index.kmer_index import KmerIndexBuilder, records_in

    np.testing.assert_array_equal(records_in(np.array([3, 3, 1, 0, 1, 2])), [3, 1, 0, 2])
    rng = np.random.default_rng(8)
    roots = [rng.integers(3, 7, size=1500).astype(np.uint8) for _ in range(20)]
    family = rng.permutation(np.arange(200) % 20)
    builder = KmerIndexBuilder(KmerIndexConfig(k=10, segment=700))  # three segments a record
    for r, f in enumerate(family):
        builder.add(r, mutate(roots[f], 0.01, rng))
    assert builder.record_order is None
    builder.finish()
    order = builder.record_order
    assert sorted(order.tolist()) == list(range(200))
    together = np.mean(family[order[1:]] == family[order[:-1]])
    assert together > 0.6 and np.mean(family[1:] == family[:-1]) < 0.2, together  # 0.77; 0.05 by chance


def test_compact_columns_take_the_fewest_bytes_and_read_back_as_they_were():
    """gene_ae/index/compact.py: integers in the smallest type holding them; row pointers as a byte a row with the
    long rows apart, read back to the same pointers; a count of long rows that does not match is refused."""
    from gene_ae.index.compact import narrow, split_lengths, wide
    from gene_ae.index.postings import RowLengths

    assert [narrow(np.array(v)).dtype for v in ([0, 255], [256], [70_000], [-1], [2**40])] == [
        np.uint8, np.uint16, np.uint32, np.int32, np.int64]  # fmt: skip
    ptr = np.cumsum(np.r_[0, np.random.default_rng(4).integers(0, 3, 5000) ** 9])  # 0, 1, 512 nibbles a row
    short, long = split_lengths(ptr)
    assert short.dtype == np.uint8 and long.dtype == np.uint16 and long.size == int((np.diff(ptr) >= 255).sum())
    np.testing.assert_array_equal(RowLengths.of(short, long).pointers(), ptr)
    with pytest.raises(ValueError, match="long rows for"):
        RowLengths.of(short, long[:-1])
    with pytest.raises(ValueError, match="not an integer column"):
        wide(np.zeros(3, np.float32), "span")


def test_wide_rows_get_more_segments_from_the_same_scores_and_the_others_are_unchanged():
    """search_segments' `wide` rows (a remote gene query's deep pool) also get their best k_wide segments: the same
    as a search asking k_wide for them, and every row's first k the same as without `wide`."""
    rng = np.random.default_rng(4)
    seqs = [rng.integers(3, 7, size=n).astype(np.uint8) for n in rng.integers(200, 1500, size=120)]
    idx = KmerIndex.build(seqs, KmerIndexConfig())
    queries = [seqs[5][:600], seqs[9], seqs[70][100:]]
    wide = np.array([True, False, True])
    found, sims, wfound, wsims = idx.search_segments(queries, 4, wide=wide, k_wide=30)
    plain = idx.search_segments(queries, 4)
    np.testing.assert_array_equal(found, plain[0])
    np.testing.assert_array_equal(sims, plain[1])
    deep = idx.search_segments([q for q, w in zip(queries, wide) if w], 30)
    np.testing.assert_array_equal(wfound, deep[0])
    np.testing.assert_array_equal(wsims, deep[1])
    assert wfound.shape == (2, 30) and (wfound[:, :4] == found[wide]).all()
    assert len(idx.search_segments(queries, 4, wide=wide, k_wide=4)) == 2  # no wider than k: nothing more


def test_a_loaded_index_finds_its_rows_pointers_from_block_starts_as_the_whole_table_has_them(tmp_path):
    """A loaded index keeps each row's length and every 64th row's pointer, not 2^20 pointers: the pointers of
    any rows it is asked for (block edges, rows of 255 nibbles or more, the last) are the whole table's, a search
    answers the same as the index built in memory, and a row outside the table is refused."""
    from gene_ae.index.compact import split_lengths
    from gene_ae.index.postings import BLOCK_SHIFT, RowLengths

    rng = np.random.default_rng(4)
    lengths = rng.integers(0, 40, 5000)
    lengths[rng.choice(5000, 300, replace=False)] = rng.integers(255, 100_000, 300)  # long rows, some side by side
    lengths[63:66] = [255, 254, 70_000]
    ptr = np.r_[0, np.cumsum(lengths)]
    held = RowLengths.of(*split_lengths(ptr))
    rows = np.r_[np.arange(5000), rng.integers(0, 5000, 2000), [0, 63, 64, 4999]]
    lo, hi = held.spans(rows)
    assert (lo == ptr[rows]).all() and (hi == ptr[rows + 1]).all() and (held.pointers() == ptr).all()
    assert held.at.size == -(-5000 >> BLOCK_SHIFT) + 1 and held.at[-1] == ptr[-1]
    with pytest.raises(ValueError, match="outside"):
        held.spans(np.array([5000]))
    damaged = RowLengths(held.short, held.long, held.at, np.full_like(held.used, held.long.size))  # past the list
    with pytest.raises(ValueError, match="^shard-x: damaged k-mer postings"):  # not an IndexError: one line, named
        Postings(np.zeros(1, np.uint8), damaged, 1).spans(rows, "shard-x")

    seqs = [rng.integers(3, 7, size=int(n)).astype(np.uint8) for n in rng.integers(200, 3000, 40)]
    built = KmerIndex.build(seqs, KmerIndexConfig())
    built.save(tmp_path)
    loaded = KmerIndex.load(tmp_path)
    assert isinstance(loaded.lists.pointers, RowLengths) and "ptr" not in loaded.lists.__dict__
    queries = [s[100:900] for s in seqs[:5]]
    for got, want in zip(loaded.search_segments(queries, 5), built.search_segments(queries, 5)):
        assert (got == want).all()
    assert "ptr" not in loaded.lists.__dict__  # no search made the whole table


@pytest.mark.parametrize("groups", [1, 3, 64])
def test_the_compiled_transpose_is_scipys_in_any_row_order(groups):
    """postings.transpose: the segments' 16-bit counts transposed as scipy transposes them (each k-mer's segments
    increasing), in their own order or taken in a given order and numbered by their place in it, whatever the passes
    over the input, with the columns' counts given or counted; a column past the k-mers or counts that are not the
    columns' are refused, and 32-bit counts are left to scipy."""
    from scipy import sparse

    from gene_ae.index.postings import transpose

    rng = np.random.default_rng(groups)
    m = sparse.random(700, 5000, density=0.02, format="csr", random_state=groups)  # 5 runs of 1,024 k-mers
    m.data = rng.integers(1, 65535, m.data.size).astype(np.uint16)
    m.indices = m.indices.astype(np.int32)
    held = np.bincount(m.indices, minlength=5000)
    for order in (None, rng.permutation(700).astype(np.int32)):
        want = (m if order is None else m[order]).T.tocsr()
        for counts in (None, held):
            ptr, idx, val = transpose(m.indptr, m.indices, m.data, 5000, order, counts, groups=groups)
            assert (ptr == want.indptr).all() and (idx == want.indices).all() and (val == want.data).all()
    with pytest.raises(ValueError, match="outside"):
        transpose(m.indptr, m.indices, m.data, 4000)
    wrong = held.copy()
    wrong[[3, 4000]] += [1, -1]  # the same total, two columns off: refused, nothing written past them
    with pytest.raises(ValueError, match="not as many as counted"):
        transpose(m.indptr, m.indices, m.data, 5000, None, wrong, groups=groups)
    with pytest.raises(ValueError, match="not as many as counted"):  # a column past the counts' k-mers, in no run
        transpose(np.array([0, 1, 2]), np.array([0, 9], np.int32), np.ones(2, np.uint16), 5, None,
                  np.array([2, 0, 0, 0, 0]), groups=groups)  # fmt: skip
    with pytest.raises(ValueError, match="an order of"):
        transpose(m.indptr, m.indices, m.data, 5000, np.full(700, 700, np.int32), groups=groups)
    assert transpose(m.indptr, m.indices, m.data.astype(np.uint32), 5000) is None
