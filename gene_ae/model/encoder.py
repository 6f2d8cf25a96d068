"""`Encoder`: DNA strings -> float32 search vectors, from any model URI or a local checkpoint."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gene_ae.core.bagvec import BagTable, BagTables, canonical_ids
from gene_ae.core.batches import by_bases
from gene_ae.core.kmers import kmer_id_row
from gene_ae.core.windows import cuts, pad_batch, tile
from gene_ae.model import checkpoint
from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.bags import kmer_ids
from gene_ae.model.features import check_given, codes_of_rows, require, vector_features
from gene_ae.model.losses import reconstruction_counts
from shard_tools.alphabet import PAD, A, InvalidSequenceError, T, encode

EMBED_CHUNK = 1 << 14  # bases per piece when only k-mer bags make the vector
SPAN_CHUNK_BASES = 1 << 21  # embed_spans lays about this many bases of sequences end to end at a time
IDS_CHUNK = 1 << 14  # k-mer positions whose ids embed_spans computes per call: under torch's parallel grain
MAX_LENGTH = 50_000_000  # longer inputs are refused: a sign of a concatenated file, not a sequence


def validate(seqs: Sequence[str]) -> list[np.ndarray]:
    """Tokenise sequences given as strings (the API, the served model), with a one-line error naming the bad row.
    Stricter than a file reader: a digit is refused, not skipped (files may number their sequence lines; a string
    holding `ACGT1234ACGT` is a mistake, not `ACGTACGT`), and so is a sequence with no A, C, G or T (it would
    get a vector of nothing)."""
    out = []
    for i, s in enumerate(seqs):
        if not isinstance(s, str | bytes):
            raise ValueError(f"row {i}: expected a DNA string, got {type(s).__name__}")
        text = s.decode("latin-1") if isinstance(s, bytes) else s
        digit = next((p for p, c in enumerate(text) if c.isdigit()), None)
        if digit is not None:
            raise ValueError(f"row {i}: digit {text[digit]!r} at position {digit + 1}: a sequence is letters only")
        try:
            tokens = encode(s)
        except InvalidSequenceError as exc:
            raise ValueError(f"row {i}: {exc}") from None
        if tokens.size == 0:
            raise ValueError(f"row {i}: empty sequence")
        if not np.any((tokens >= A) & (tokens <= T)):
            raise ValueError(f"row {i}: no A, C, G or T base ({tokens.size:,} N): nothing to embed")
        if tokens.size > MAX_LENGTH:
            raise ValueError(f"row {i}: {tokens.size:,} bases is over the {MAX_LENGTH:,} limit")
        out.append(tokens)
    return out


@dataclass
class Reconstruction:
    """Decoded windows and the totals behind accuracy (correct / bases) and bits per base (nats / ln 2 / bases)."""

    tokens: list[np.ndarray]
    nats: float
    correct: int
    bases: int


def resolve_checkpoint(uri: str) -> Path:
    """A local checkpoint directory, or download the model's checkpoint artifact from MLflow. A training run's
    directory (`--storage`/`--name`) gives its latest checkpoint: Ray names them by time."""
    local = Path(uri)
    if local.exists() and not local.is_dir():
        raise FileNotFoundError(f"{uri}: a file, not a checkpoint directory or model URI")
    if local.is_dir():
        candidates = [local, local / "checkpoint", *sorted(local.glob("artifacts/*")),
                      *sorted(local.glob("*"), reverse=True)]  # fmt: skip
        for candidate in candidates:
            if (candidate / checkpoint.MODEL_FILE).is_file():
                return candidate
        raise FileNotFoundError(f"{uri}: no gene-ae checkpoint inside")
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", uri):  # a local path, not a URI (MLflow: "No such artifact")
        raise FileNotFoundError(f"{uri}: no such checkpoint directory (nor a models:/ or runs:/ URI)")
    import mlflow

    if uri.startswith(("models:/", "runs:/")):  # looked up in the registry: there and answering, never created
        from gene_ae.core.stores import check_store

        check_store(uri)
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    if not root.is_dir():  # a single file came back: no checkpoint (and no endless recursion)
        raise FileNotFoundError(f"{uri}: no gene-ae checkpoint inside")
    return resolve_checkpoint(str(root))


def _batches_of_bases(jobs: list, sizes: list[int], bases: int) -> list[list]:
    """Consecutive jobs grouped so each group (padded to its longest, jobs are sorted by size) holds
    about `bases` bases: many short pieces or a few long ones per batch."""
    out: list[list] = []
    start = 0
    for end in range(1, len(jobs) + 1):
        if end == len(jobs) or sizes[end] * (end + 1 - start) > bases:
            out.append(jobs[start:end])
            start = end
    return out


def span_groups(owner: np.ndarray, sizes: Sequence[int], bases: int) -> Iterator[tuple[np.ndarray, list[int]]]:
    """(span rows, their owners ascending) in groups whose owners hold about `bases` bases together, so
    that embed_spans holds one group's sequences laid end to end at a time (a longer one is a group alone)."""
    order = np.argsort(owner, kind="stable")
    owners, first = np.unique(owner[order], return_index=True)
    bounds = [*first.tolist(), len(order)]
    for group in by_bases(range(len(owners)), lambda j: sizes[owners[j]] + 1, bases):
        lo, hi = group[0], group[-1] + 1
        yield order[bounds[lo] : bounds[hi]], owners[lo:hi].tolist()


def range_sums(
    ids: torch.Tensor, weight: torch.Tensor, lo: np.ndarray, hi: np.ndarray, group: np.ndarray, n: int
) -> torch.Tensor:
    """[n, dim]: for each group g, the sum over its ranges [lo, hi) of `group` == g of weight[ids[p]] (the
    last row of weight is padding, never counted). Ranges that overlap share their lookups: the positions
    are cut at every range end into pieces summed once (one EmbeddingBag pass over them), and each range
    adds up its pieces."""
    cuts = np.unique(np.concatenate([lo, hi]))
    out = torch.zeros((n, weight.shape[1]), dtype=torch.float32, device=weight.device)
    if cuts.size < 2:
        return out
    dev = weight.device
    if weight[-1].any():  # the padding row is zero (EmbeddingBag's padding_idx); padding_idx itself is 3x slower
        weight = torch.cat([weight[:-1], torch.zeros_like(weight[-1:])])
    offsets = torch.from_numpy((cuts - cuts[0]).astype(np.int32)).to(dev)  # int32: fbgemm's faster kernel
    pieces = F.embedding_bag(ids[cuts[0] : cuts[-1]].int(), weight, offsets, mode="sum", include_last_offset=True)
    a, b = np.searchsorted(cuts, lo), np.searchsorted(cuts, hi)  # each range is pieces a..b-1
    count = b - a
    which = np.repeat(a - (np.cumsum(count) - count), count) + np.arange(int(count.sum()))
    per_group = np.bincount(group, weights=count, minlength=n).astype(np.int64)
    bag_offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(per_group)])).to(dev)
    order = np.argsort(np.repeat(group, count), kind="stable")  # a group's ranges together
    return F.embedding_bag(torch.from_numpy(which[order]).to(dev), pieces, bag_offsets, mode="sum",
                           include_last_offset=True)  # fmt: skip


class Encoder:
    """Embeds sequences of any length; long ones are tiled into windows and pooled."""

    def __init__(self, model: GeneAE, device: str | torch.device | None = None, uri: str = ""):
        """`model`'s own ModelConfig (model.cfg) is all it reads: no run config, no training settings."""
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.cfg = model.cfg
        self.uri = uri

    @classmethod
    def load(cls, uri: str, device: str | None = None) -> Encoder:
        """uri: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/encoder, or a checkpoint directory."""
        model, _ = checkpoint.load_model(resolve_checkpoint(uri))
        return cls(model, device, uri)

    @property
    def dim(self) -> int:
        return self.cfg.vector_dim

    @property
    def window(self) -> int:
        return self.cfg.window

    def _tensor(self, pieces: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, _ = pad_batch(pieces)
        x = torch.from_numpy(tokens.astype(np.int64)).to(self.device)
        return x, x != PAD

    def _pieces(self) -> tuple[int, int]:
        """(piece length, overlap) for embedding. With the LSTM trunk in the vector: training windows,
        tiled with the last one aligned to the end. Otherwise: cuts every EMBED_CHUNK bases, each piece
        running the widest branch's reach less one on (longest k-mer or seed width), so every widest k-mer or
        seed span is counted exactly once (narrower ones at most reach - k times more per cut) and the vector
        is that of one pass over the sequence (the conv branch, being local, too, but for the few positions
        at each cut)."""
        if self.cfg.vector_trunk:
            return self.window, 0
        return max(self.window, EMBED_CHUNK), self.cfg.vector_reach - 1

    def bag_tables(self) -> BagTables | None:
        """This model's vector as numpy tables (gene_ae/core/bagvec.py) when it is k-mer bags alone, with no
        features and stored float; None for any other model (its vector needs torch)."""
        m = self.model
        if (self.cfg.n_branches != len(self.cfg.kmer_sizes) or m.feature_encoder is not None
                or m.product_code is not None or (self.cfg.vector_bits and self.cfg.code_views)):  # fmt: skip
            return None
        tables = []
        for k, bag in zip(self.cfg.kmer_sizes, m.kmer_bags):
            buckets = self.cfg.kmer_rows(k) - 1
            hashed = buckets < 4**k
            rows = canonical_ids(k) if self.cfg.canonical_kmers and not hashed else np.arange(buckets, dtype=np.int64)
            weights = bag.weight.detach().float().cpu().numpy()[rows]
            tables.append(BagTable(k, buckets, rows, np.ascontiguousarray(weights)))
        piece, overlap = self._pieces()
        return BagTables(tuple(tables), self.cfg.canonical_kmers, piece, overlap)

    @property
    def required_features(self) -> list[str]:
        """The features this model's vector needs with every sequence (model.features with use = vector)."""
        return [f.name for f in vector_features(self.cfg.features)]

    def check_features(self, declared: Mapping[str, str], where: str) -> tuple[str, ...]:
        """The features this model's vector takes, each of which the input must declare (--feature-column, as
        name -> kind): else a one-line error naming `where` and the first missing, before anything is embedded."""
        check_given(
            vector_features(self.cfg.features), declared, where, ": declare it with --feature-column {name}:{kind}"
        )
        needed = tuple(self.required_features)
        return needed

    @torch.no_grad()
    def embed_tokens(
        self, seqs: Sequence[np.ndarray], batch_size: int = 64, features: Mapping[str, Sequence] | None = None
    ) -> np.ndarray:
        """Token arrays -> [n, dim] L2-normalised float32: each sequence's branch sums (`branch_sums`)
        combined (GeneAE.combine), plus its vector features' part when the model has some: `features` maps
        each required feature's name to one value per sequence (None: missing), else a one-line error."""
        return self._vectors(self.branch_sums(seqs, batch_size), features)

    @torch.no_grad()
    def embed_spans(
        self,
        seqs: Sequence[np.ndarray],
        spans: np.ndarray,
        batch_size: int = 64,
        features: Mapping[str, Sequence] | None = None,
    ) -> np.ndarray:
        """[len(spans), dim]: what embed_tokens gives the pieces seqs[o][a:b] for each row (o, a, b) of
        `spans` (features: one value per span). When the vector is k-mer bags alone, a sequence's k-mers are
        looked up once for all its spans (a record and its half-overlapping windows: 2-3x fewer lookups for
        genes, and no padding); any other model embeds the pieces."""
        spans = np.asarray(spans, dtype=np.int64).reshape(-1, 3)
        if self.cfg.n_branches != len(self.cfg.kmer_sizes):  # a trunk, conv or seed branch: per piece
            return self.embed_tokens([seqs[o][a:b] for o, a, b in spans], batch_size, features)
        if ((spans[:, 2] - spans[:, 1]) < 1).any():
            raise ValueError(f"row {int(np.argmax(spans[:, 2] <= spans[:, 1]))}: empty sequence")
        w, extra = self._pieces()
        sums = torch.zeros((len(spans), len(self.cfg.kmer_sizes), self.dim), dtype=torch.float32)
        for rows, owners in span_groups(spans[:, 0], [int(s.size) for s in seqs], SPAN_CHUNK_BASES):
            sums[torch.from_numpy(rows)] = self._span_sums([seqs[o] for o in owners], spans[rows], w, extra)
        return self._vectors(sums, features)

    def _span_sums(self, seqs: list[np.ndarray], spans: np.ndarray, w: int, extra: int) -> torch.Tensor:
        """[len(spans), n_bags, dim] bag sums of spans whose owners are the sequences seqs (in that order,
        spans[:, 0] ascending). The sequences are laid end to end with a PAD between (k-mers across it get
        the pad id); each span is cut as branch_sums cuts a piece (every w bases, running `extra` on)."""
        starts = np.cumsum([0] + [s.size + 1 for s in seqs])
        flat = np.full(int(starts[-1]) + max(self.cfg.kmer_sizes), PAD, np.uint8)  # ids at every start
        for s, a in zip(seqs, starts):
            flat[a : a + s.size] = s
        owner = np.searchsorted(np.unique(spans[:, 0]), spans[:, 0])
        length = spans[:, 2] - spans[:, 1]
        n_cuts = -(-length // w)
        first = np.repeat(np.cumsum(n_cuts) - n_cuts, n_cuts)
        cut = np.arange(int(n_cuts.sum())) - first  # the cut's number within its span
        span_of = np.repeat(np.arange(len(spans)), n_cuts)
        lo = starts[owner][span_of] + spans[span_of, 1] + cut * w
        end = starts[owner][span_of] + spans[span_of, 1] + np.minimum((cut * w) + w + extra, length[span_of])
        tokens = torch.from_numpy(flat).to(self.device)[None]
        out = []
        for k, bag in zip(self.cfg.kmer_sizes, self.model.kmer_bags):
            ids = self._flat_ids(tokens, k)
            out.append(range_sums(ids, bag.weight, lo, np.maximum(end - k + 1, lo), span_of, len(spans)))
        return torch.stack(out, 1).cpu()

    def _flat_ids(self, tokens: torch.Tensor, k: int) -> torch.Tensor:
        """bags.kmer_ids of one long row [1, L] -> [L - k + 1]: on the CPU in C (kmers.kmer_id_row, the same ids,
        5x faster: 1.8 s, not 9.4, of py-spy's samples building SILVA's 100,000-gene val split), elsewhere
        IDS_CHUNK positions at a time: each chunk's k shifted passes stay in cache and run on one thread (below
        torch's parallel grain), 1.5x faster than one pass over the row and 10x cheaper than two threads fighting
        for 2 cores."""
        m = self.cfg
        if tokens.device.type == "cpu":
            return torch.from_numpy(kmer_id_row(tokens[0].numpy(), k, m.canonical_kmers, m.kmer_rows(k) - 1))
        n = tokens.shape[1] - k + 1
        parts = [kmer_ids(tokens[:, a : a + IDS_CHUNK + k - 1], k, m.canonical_kmers, m.kmer_rows(k) - 1)[0]
                 for a in range(0, n, IDS_CHUNK)]  # fmt: skip
        return torch.cat(parts)

    def _vectors(self, sums: torch.Tensor, features: Mapping[str, Sequence] | None) -> np.ndarray:
        """Branch sums [n, n_branches, dim] -> [n, dim] L2-normalised float32 (GeneAE.combine, features)."""
        vectors = self.model.combine(sums.to(self.device)).float()
        n = sums.shape[0]
        if self.model.feature_encoder is not None:
            specs = self.cfg.features
            require(specs, features or {}, n)
            coded = torch.from_numpy(codes_of_rows(specs, features, n)).to(self.device)
            vectors = vectors + self.model.feature_encoder(coded)
        vectors = self.model.stored(vectors)  # the code the model was trained as (vector_bits, vector_pq)
        return torch.nn.functional.normalize(vectors.cpu(), dim=-1).numpy()

    @torch.no_grad()
    def branch_sums(self, seqs: Sequence[np.ndarray], batch_size: int = 64) -> torch.Tensor:
        """[n, n_branches, dim] float32: each search-vector branch summed over the whole sequence, before combine.

        Every sequence is cut into pieces (`_pieces`), batched together by length; a sequence's sums are
        its pieces' sums added up. Memory is one batch of pieces, whatever the sequence lengths.
        """
        empty = next((i for i, s in enumerate(seqs) if s.size == 0), None)
        if empty is not None:
            raise ValueError(f"row {empty}: empty sequence")
        w, extra = self._pieces()
        jobs = tile(seqs, w) if self.cfg.vector_trunk else cuts(seqs, w)
        branches = self.cfg.n_branches
        sums = torch.zeros((len(seqs), branches * self.dim), dtype=torch.float32)
        sizes = [min(seqs[i].size - s, w + extra) for i, s in jobs]
        for batch in _batches_of_bases(jobs, sizes, batch_size * self.window):
            pieces = [seqs[i][start : start + w + extra] for i, start in batch]
            piece_sums = self.model.branch_sums(*self._tensor(pieces)).float().cpu()
            sums.index_add_(0, torch.tensor([i for i, _ in batch]), piece_sums.reshape(len(pieces), -1))
        return sums.view(len(seqs), branches, self.dim)

    def embed(
        self, seqs: Sequence[str], batch_size: int = 64, features: Mapping[str, Sequence] | None = None
    ) -> np.ndarray:
        """Strings (the API, the served model) -> vectors; a string refused by `validate`, or one too short for
        anything the model counts (it would get a zero vector), is a one-line error naming its row."""
        tokens = validate(seqs)
        vectors = self.embed_tokens(tokens, batch_size, features)
        empty = np.flatnonzero(~vectors.any(axis=1))
        if empty.size:
            i = int(empty[0])
            raise ValueError(f"row {i}: {tokens[i].size:,} bases give this model nothing to count (too short for "
                             "its k-mers and seeds): nothing to embed")  # fmt: skip
        return vectors

    @torch.no_grad()
    def reconstruct_windows(self, windows: Sequence[np.ndarray], batch_size: int = 64) -> Reconstruction:
        """Decode each window (at most `window` bases) from its latent alone; argmax tokens per window and
        the totals of model.reconstruction_counts (real bases only)."""
        out = Reconstruction([], 0.0, 0, 0)
        for b in range(0, len(windows), batch_size):
            pieces = list(windows[b : b + batch_size])
            if any(p.size > self.window for p in pieces):
                raise ValueError(f"reconstruct_windows takes windows of at most {self.window} bases")
            x, mask = self._tensor(pieces)
            logits = self.model.decode(self.model.encode(x, mask).code, x.shape[1]).float()
            nats, correct, count = reconstruction_counts(logits, x, mask)
            decoded = logits.argmax(-1).cpu().numpy().astype(np.uint8)
            out.tokens += [decoded[row, : p.size] for row, p in enumerate(pieces)]
            out.nats, out.correct, out.bases = (
                out.nats + float(nats),
                out.correct + int(correct),
                out.bases + int(count),
            )
        return out

    def reconstruct_tokens(self, tokens: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Decode a sequence of any length: its windows laid end to end, each decoded from its own latent."""
        windows = [tokens[s : s + self.window] for s in range(0, tokens.size, self.window)]
        decoded = self.reconstruct_windows(windows, batch_size).tokens
        return np.concatenate(decoded) if decoded else np.zeros(0, np.uint8)
