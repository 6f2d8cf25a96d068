"""The ranges of the search settings a caller sends (k, rerank, deep): one definition that `gene-ae search`'s options
and the endpoint's request fields are both checked against. engine.search checks only the lower ends, for
library callers (gene_ae/search/engine.py)."""

from __future__ import annotations

from shard_tools.options import Range

SEARCH_LIMITS = {
    "k": Range(1, 100_000),  # hits per query
    "rerank": Range(0, 10_000),  # hits aligned to the query
    "deep": Range(0, 10_000),  # hits aligned to a remote query (engine.SearchConfig.deep)
    "deep_pool": Range(0, 100_000),  # a remote gene query's candidates its deep ones are picked from (SearchConfig)
    "deep_trace": Range(0, 10_000),  # a remote query's aligned hits traced and ranked by score (SearchConfig)
    "evalue": Range(0),  # report only hits with an expect value at most this (a finite number, as blastn -evalue)
}
