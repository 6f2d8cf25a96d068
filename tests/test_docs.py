"""The docs state what the code does, where a test can check it: every path README.md and docs/ name exists, and
the constants they quote equal the code's."""

from __future__ import annotations

import re

import pytest
from shared import REPO

from gene_ae.index import vectors
from gene_ae.index.seqstore import BLOCK_BASES
from gene_ae.search import engine
from gene_ae.search.candidates import DEFAULT_SOURCES, LONG_QUERY_SHARE, QUERY_PIECE
from gene_ae.search.chain import ChainConfig
from gene_ae.search.depth import DEEP_POOL

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PATH = re.compile(
    r"(?<![/\w.~-])((?:gene_ae|shard_tools|benchmarks|tests|docs|cluster|infra|data)/[A-Za-z0-9_./-]*[A-Za-z0-9_])"
)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_the_docs_name_exists(doc) -> None:
    text = doc.read_text()
    missing = []
    for found in sorted(set(PATH.findall(text))):
        path = found.rstrip(".")
        if "*" in path or "NNNNN" in path:
            continue
        if not any((REPO / p).exists() for p in (path, path + ".py", path.rsplit(".", 1)[0])):
            missing.append(path)
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def test_the_constants_the_readme_quotes_are_the_codes() -> None:
    readme = (REPO / "README.md").read_text()
    assert f"aligns the query to the top {engine.DEFAULT_RERANK} (`--rerank N`" in readme
    assert DEFAULT_SOURCES == ("sparse",) and "from the exact k-mer index by default" in readme
    assert 2 * QUERY_PIECE == 4096 and "A query over 4 kb is answered region by region" in readme
    assert ChainConfig().k == 13 and "co-linear 13-mer matches" in readme
    assert (engine.DEEP, engine.DEEP_BELOW) == (
        300,
        0.8,
    ) and "to 300 candidates when the best of those is below 0.8" in readme
    assert DEEP_POOL == 2000 and "the 300 are the first 40 and, of the first 2,000 by" in readme
    assert (vectors.CODED_FLAT_MAX, vectors.FLAT_MAX) == (262_144, 20_000)
    assert "scanned whole up to 262,144 codes a shard, or 20,000 uncoded" in readme
    assert "postings as nibble varints" in readme
    architecture = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    assert LONG_QUERY_SHARE == 4 and "reading 1 in 4 of their k-mers" in architecture
    assert BLOCK_BASES == 32 * 1024 and "blocks of 32 Ki bases" in architecture
    assert f"The top {engine.DEFAULT_RERANK} (each list's best" in architecture
    assert "flat <= 262,144 codes or 20,000 uncoded a shard" in architecture
