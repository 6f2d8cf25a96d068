"""A hit: what search reports for one subject (or one region of it) found for a query."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gene_ae.search.stats import Region

Subject = Callable[[int], np.ndarray]  # record position -> its tokens (what a hit is aligned against)


@dataclass
class Hit:
    """One subject found for a query: its position in the index, the candidate score (fused, or the
    vector similarity), the alignment identity once re-ranked, the subject's matching region (0-based, end
    exclusive), the query's strand and span once aligned, and its local alignment (BLAST's columns) once traced."""

    subject: int
    score: float
    identity: float | None = None
    subject_start: int = 0
    subject_end: int = 0
    similarity: float | None = None  # cosine of the record vectors, when the dense list found it
    strand: str = "+"
    query_start: int = 0
    query_end: int = 0
    local: Region | None = None  # gene_ae/search/stats.py: the traced HSP
    evalue: float | None = None  # of `local`, over the collection searched
    cigar: str = ""  # the path over the spans, when known (align.Alignment.cigar; a chained region's, regions.py)
