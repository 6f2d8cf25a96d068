"""The search a user runs, as an evaluation method: "gene-ae search" is `gene-ae embed` + `gene-ae search` with
their defaults (an index built by gene_ae.index.build, searched through Searcher with the default SearchConfig:
the exact k-mer candidates, the top DEFAULT_RERANK aligned), so a report scores the default search beside the
vector ("gene-ae") and the baselines, not the vector alone."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gene_ae.core.records import InputRecord
from gene_ae.index.build import BuildConfig, LocalEmbed, ModelInfo, build_index
from gene_ae.search.engine import DEFAULT_RERANK, SearchConfig
from gene_ae.search.searcher import Searcher

if TYPE_CHECKING:
    from gene_ae.model.encoder import Encoder

NAME = "gene-ae search"


class SearcherIndex:
    """A collection indexed as `gene-ae embed` indexes it, in a temporary directory removed with this object."""

    def __init__(self, refs: Sequence[np.ndarray], encoder: Encoder, batch_size: int):
        self.refs = refs
        self._dir = Path(tempfile.mkdtemp(prefix="gene-ae-eval-index-"))
        weakref.finalize(self, shutil.rmtree, self._dir, True)
        model = ModelInfo(uri=encoder.uri or "(in memory)", version="", dim=encoder.dim, window=encoder.window)
        records = (InputRecord(f"r{i}", s) for i, s in enumerate(refs))
        build_index(records, LocalEmbed(encoder, batch_size), model, self._dir / "index", BuildConfig())
        self.searcher = Searcher.open(self._dir / "index")

    def search(self, queries: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Hit positions (-1: none) and their scores (alignment identity where aligned, else the fused score)."""
        hits = self.searcher.search([InputRecord(f"q{i}", q) for i, q in enumerate(queries)], SearchConfig(k=k))
        idx = np.full((len(queries), k), -1, np.int64)
        sims = np.full((len(queries), k), -1.0, np.float32)
        for row, found in enumerate(hits):
            for col, hit in enumerate(found[:k]):
                idx[row, col] = hit.subject
                sims[row, col] = hit.identity if hit.identity is not None else hit.score
        return idx, sims

    def self_search(self, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        from gene_ae.evaluate.methods import drop_self

        positions = np.asarray(positions, dtype=np.int64)
        idx, sims = self.search([self.refs[p] for p in positions], k + 1)
        return drop_self(idx, sims, positions, min(k, len(self.refs) - 1))


@dataclass
class SearchMethod:
    """The default search. Its ranking is alignment's, so distance faithfulness (a pair similarity against
    alignment identity) does not score it."""

    encoder: Encoder
    batch_size: int = 64
    name: str = NAME

    @property
    def description(self) -> str:
        return (
            "`gene-ae search` with its defaults: an index built as `gene-ae embed` builds it, searched through "
            f"Searcher (exact k-mer candidates, the top {DEFAULT_RERANK} re-ranked by alignment)"
        )

    def index(self, refs: Sequence[np.ndarray]) -> SearcherIndex:
        return SearcherIndex(refs, self.encoder, self.batch_size)
