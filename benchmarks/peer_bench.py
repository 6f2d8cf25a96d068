"""gene-ae against BLAST+, MMseqs2 and minimap2 on a real or a grown collection: one command, one table.

    python benchmarks/peer_bench.py (--model URI | --train-steps S [--train-config TOML]) [--n 100000]
                                    [--real FASTA] [--queries 50] [--threads 2] [--work /tmp/peer-bench] [--keep]
                                    [--quick] [--out FILE] [--tools gene-ae,blastn,megablast,mmseqs] [--long]
                                    [--variant LABEL=EMBED_FLAGS[::SEARCH_FLAGS]] [--search-variant LABEL=FLAGS]

--real FASTA (issue 31; the headline tables): the collection is the first --n records of a real FASTA as they
are (e.g. SILVA SSU from Debian's ncbi-rrna-data: `blastdbcmd -db /usr/share/ncbi/data/SSURef_93.fasta -entry all`),
each record its own family, renamed r0000001...; besides the mutated copies the queries include the reverse
complement of each 10 % copy and an exact 300-base piece of each source (found when the top hit holds it
exactly). --search-variant adds a gene-ae row that searches the default index with other flags (an ablation
costs no rebuild). Without --real, the collection is grown as below (the labelled scale rows):

What it does:

1. Grows a collection of N genes (--n, default 100000) from the shared real genes the way real databases look:
   families of near-identical relatives, each new member a mutated (1-8 %, substitutions and indels via
   gene_ae.core.mutate) copy of an earlier member of its family. The seeds are the shared real genes, shuffled:
   dog and chimp protein-coding genes (genefam/dog_data.txt, genefam/chimp_data.txt; the shared data holds no
   human genes) and 16S rRNA genes (rrna16s/ten_16s.100.fa.gz), one family each, min(all seeds, N / --family)
   of them. Each new member copies a uniformly drawn earlier record, so a family grows in proportion to its
   size (a Yule process: a few large families and many small ones, as in real databases). The records are
   shuffled and written as FASTA; everything is seeded (--seed).
2. Queries: --queries (default 50) sampled members, mutated copies at each divergence 10/20/30 %
   (gene_ae.evaluate.metrics.mutated_copies). The truth is the source member's id: recall@1 = the source ranks
   first, recall@10 = it is in the top 10 (a record with the very same sequence counts as the source).
   Near-identical relatives make recall@1 of the exact source hard for any tool (a relative 1 % from the
   source is as close to a 30 %-mutated query as the source is), so "family recall@1" (the top hit is in the
   source's family) is reported too, to read the figures honestly.
3. Runs each tool as a user would, as subprocesses with --threads threads each (default 2), in the same run on
   the same files: gene-ae (`gene-ae embed --model M --input coll.fa --out IDX`, then `gene-ae search --index
   IDX queries.fa -k 10 --threads T`, defaults otherwise; the embed's threads through OMP_NUM_THREADS /
   MKL_NUM_THREADS); BLAST+ (`makeblastdb -dbtype nucl`, then `blastn -task blastn` and `blastn -task
   megablast`, -outfmt 6 -max_target_seqs 10 -num_threads T, default e-value; both share one database);
   MMseqs2 (`mmseqs createdb`, `mmseqs createindex --search-type 3`, then `mmseqs easy-search queries.fa DB
   out.m8 tmp --search-type 3 --threads T` against the indexed database: easy-search uses DB.idx when the
   target is a database that has one). With --train-steps instead of --model a model is first trained with
   `python -m gene_ae.train` on shards (shard-fasta) of a 20,000-record sample of the collection, and the
   checkpoint it writes is used; training time is reported separately, not as build time.
   Per tool: build time, peak memory of the build, index bytes on disk (every file the build wrote, the
   sequences included, the FASTA input not), time per query of the whole search process (its wall time /
   queries), marginal time per query (the search run with all queries and with one: (t_all - t_one) / (n - 1)),
   peak memory while searching, recall@1 and @10 per divergence and family recall@1 per divergence.
   Peak memory is GNU time's (/usr/bin/time -v) maximum resident set size: the largest single process of the
   command's tree (MMseqs2 runs its steps one after another, so that is its peak); without /usr/bin/time the
   summed RSS of the process tree, polled every 50 ms with psutil.
4. Prints one markdown table (rows = tools), with ratios to gene-ae (time per query, index bytes); --out also
   writes it. --work is the scratch folder (default /tmp/peer-bench); --keep reuses the collection, the
   indexes (and their recorded build figures), the searches (hits and figures, when the command is the same;
   the text says which rows) and a trained model from an earlier run with the same settings. --tools picks the
   rows (gene-ae, blastn, megablast, mmseqs, and mmseqs-db: MMseqs2 without createindex, for sizes whose index
   does not fit on disk).
5. --quick: a smoke run (n 2000, 10 queries per divergence; with --long n 300, 5 queries).
6. --long: long sequences instead of genes (issue 18's second target). The seeds are loci and genome windows:
   E. coli and S. aureus chromosomes, phage lambda, the first mpox and the first SARS-CoV-2 genome of the shared
   data, each cut end to end into windows of log-uniform length in 1-100 kb (seed_loci); the collection grows
   from them as above (defaults --n 2000 --family 5 --queries 30), queries are whole mutated members (1-100 kb).
   The rows: gene-ae, minimap2 (`minimap2 -x asm20 -d db.mmi`, then `minimap2 -x asm20 -N 10 db.mmi q.fa`; hits
   in PAF order, the primary first), blastn -task blastn and megablast.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from common import emit
from study import train_cli

DATA = Path(os.environ.get("GENE_AE_SHARED_DATA", "/work/shared/data"))
DIVERGENCES = (0.10, 0.20, 0.30)
MEMBER_DIVERGENCE = (0.01, 0.08)
SEEDS = [("genefam/dog_data.txt", "class"), ("genefam/chimp_data.txt", "class"), ("rrna16s/ten_16s.100.fa.gz", None)]
TRAIN_SAMPLE = 20_000
K = 10
GNU_TIME = Path("/usr/bin/time")


# ------------------------------------------------------------------------------------------------ inputs


@dataclass
class Grown:
    """The grown collection: record i is ids[i] with tokens seqs[i], a member of family[i]."""

    ids: list[str]
    seqs: list[np.ndarray]
    family: list[int]


LONG_SEEDS = ["bacteria/E.Coli__MG1655-K12.fasta.gz", "bacteria/S.Aureus__N315.fasta.gz",
              "viruses/lambda_phage_bowtie2_examples.fa", "viruses/mpox_nextclade_examples.fasta.gz",
              "viruses/sarscov2_nextstrain_example_sequences.fasta.gz"]  # fmt: skip
LONG_LENGTHS = (1_000, 100_000)  # --long: seed loci are windows of log-uniform length in this range


def seed_loci(seed: int) -> list[np.ndarray]:
    """--long: loci and genome windows, 1-100 kb: the two bacterial chromosomes, lambda, the first mpox and the
    first SARS-CoV-2 genome, each cut end to end into windows of log-uniform length (LONG_LENGTHS)."""
    from gene_ae.core.records import iter_input

    rng, out = np.random.default_rng(seed), []
    for name in LONG_SEEDS:
        tokens = next(iter(iter_input(DATA / name))).tokens
        at = 0
        while at < tokens.size:
            n = int(np.exp(rng.uniform(*np.log(LONG_LENGTHS))))
            if tokens.size - at >= LONG_LENGTHS[0]:
                out.append(tokens[at : at + n])
            at += n
    return out


def real_windows(seed: int) -> Grown:
    """--real-windows: a real collection of genome windows, nothing grown: every genome of LONG_SEEDS' files (the
    two bacterial chromosomes, lambda, 19 mpox and 418 SARS-CoV-2 genomes: the 20th mpox record, a 942-base gene,
    is too short for a window) cut end to end into windows of
    log-uniform length (LONG_LENGTHS), each genome from its own random offset, so the strains' windows are real
    relatives that overlap one another in part, not copies of one span."""
    from gene_ae.core.records import iter_input

    rng, seqs = np.random.default_rng(seed), []
    for name in LONG_SEEDS:
        for rec in iter_input(DATA / name):
            tokens = rec.tokens
            at = int(rng.integers(0, LONG_LENGTHS[0]))
            while tokens.size - at >= LONG_LENGTHS[0]:
                n = int(np.exp(rng.uniform(*np.log(LONG_LENGTHS))))
                seqs.append(tokens[at : at + n])
                at += n
    return Grown([f"r{i:07d}" for i in range(len(seqs))], seqs, list(range(len(seqs))))


def seed_genes() -> list[np.ndarray]:
    from gene_ae.core.records import iter_input
    from shard_tools.inputs import ReaderConfig

    out = []
    for name, label in SEEDS:
        out += [r.tokens for r in iter_input(DATA / name, ReaderConfig(label_column=label) if label else None)]
    return out


def grow(seeds: Sequence[np.ndarray], n: int, family_size: float, seed: int) -> Grown:
    """Founders (shuffled seeds), then members copied from a uniformly drawn earlier record and mutated 1-8 %;
    a copy joins its parent's family, so families grow in proportion to their size."""
    from gene_ae.core.mutate import mutate

    rng = np.random.default_rng(seed)
    founders = int(min(len(seeds), n, max(1, round(n / family_size))))
    seqs = [seeds[i] for i in rng.permutation(len(seeds))[:founders]]
    family = list(range(founders))
    while len(seqs) < n:
        parent = int(rng.integers(len(seqs)))
        seqs.append(mutate(seqs[parent], float(rng.uniform(*MEMBER_DIVERGENCE)), rng))
        family.append(family[parent])
    counts: dict[int, int] = {}
    ids = []
    for f in family:
        counts[f] = counts.get(f, 0) + 1
        ids.append(f"f{f:05d}_m{counts[f]:05d}")
    order = rng.permutation(n)  # shuffled: a family's members are not neighbours in the file
    return Grown([ids[i] for i in order], [seqs[i] for i in order], [family[i] for i in order])


def write_fasta(path: Path, ids: Sequence[str], seqs: Sequence[np.ndarray]) -> None:
    from shard_tools.alphabet import decode

    tmp = path.with_suffix(".partial")
    with open(tmp, "w") as f:
        for rid, s in zip(ids, seqs):
            f.write(f">{rid}\n{decode(s)}\n")
    tmp.replace(path)


@dataclass
class Queries:
    """Query id -> the position of its source in the collection, its group (a divergence, or a case such as the
    reverse complement), and the records that count as found (None: those identical to the source)."""

    ids: list[str]
    seqs: list[np.ndarray]
    source: list[int]
    group: list[str]
    truth: list[set[int] | None] = field(default_factory=list)


def group_name(d: float) -> str:
    return f"{round(100 * d)} %"


GROUPS = [group_name(d) for d in DIVERGENCES]
# --real adds the cases a user meets beyond mutated copies: the reverse complement of a 10 % copy, and an exact
# piece of PIECE bases cut from the middle of a record (found when the top hit holds that piece exactly)
CASES = ["rc 10 %", f"piece {300}"]
PIECE = 300


def make_queries(
    grown: Grown, per_divergence: int, seed: int, cases: bool = False, eligible: np.ndarray | None = None
) -> Queries:
    """`eligible`: the records queries may be copied from (default all)."""
    from gene_ae.evaluate.metrics import mutated_copies, sample_sources
    from shard_tools.alphabet import reverse_complement

    pool = np.arange(len(grown.seqs)) if eligible is None else np.flatnonzero(eligible)
    sources = pool[sample_sources(pool.size, per_divergence, seed)]
    q = Queries([], [], [], [], [])
    for step, d in enumerate(DIVERGENCES):
        copies = mutated_copies(grown.seqs, sources, d, seed, step)
        q.ids += [f"q{round(100 * d)}_{j}" for j in range(len(sources))]
        q.seqs += copies
        q.source += sources.tolist()
        q.group += [group_name(d)] * len(sources)
        q.truth += [None] * len(sources)
    if not cases:
        return q
    copies = mutated_copies(grown.seqs, sources, DIVERGENCES[0], seed, 0)
    q.ids += [f"rc10_{j}" for j in range(len(sources))]
    q.seqs += [reverse_complement(c) for c in copies]
    q.source += sources.tolist()
    q.group += [CASES[0]] * len(sources)
    q.truth += [None] * len(sources)
    pieces = [grown.seqs[i][max(0, grown.seqs[i].size // 2 - PIECE // 2) :][:PIECE] for i in sources]
    q.ids += [f"piece_{j}" for j in range(len(sources))]
    q.seqs += pieces
    q.source += sources.tolist()
    q.group += [CASES[1]] * len(sources)
    q.truth += holding(grown.seqs, pieces)
    return q


def holding(seqs: Sequence[np.ndarray], pieces: Sequence[np.ndarray]) -> list[set[int]]:
    """For each piece, every record that holds it exactly (on either strand)."""
    from shard_tools.alphabet import reverse_complement

    sep = np.frombuffer(b"\x00", np.uint8)
    blob = np.concatenate([x for s in seqs for x in (s, sep)]).tobytes()
    starts = np.cumsum([0] + [s.size + 1 for s in seqs])
    out = []
    for piece in pieces:
        found: set[int] = set()
        for p in (piece.tobytes(), reverse_complement(piece).tobytes()):
            at = blob.find(p)
            while at >= 0:
                found.add(int(np.searchsorted(starts, at, side="right")) - 1)
                at = blob.find(p, at + 1)
        out.append(found)
    return out


def read_real(path: Path, limit: int | None) -> Grown:
    """--real: a real collection as it is (no family structure: each record its own family), renamed r0000001...
    so that every tool reports the same ids."""
    from gene_ae.core.records import iter_input

    seqs = []
    for rec in iter_input(path):
        if rec.tokens.size:
            seqs.append(rec.tokens)
        if limit and len(seqs) >= limit:
            break
    return Grown([f"r{i:07d}" for i in range(len(seqs))], seqs, list(range(len(seqs))))


# --------------------------------------------------------------------------------------------- measuring


@dataclass
class Measured:
    wall_s: float
    peak_mib: float


def run_measured(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Measured:
    """Run one command; its wall time and peak memory (see the module docstring for how). Its output goes to a
    file, not a pipe (a verbose tool must not block on a full pipe while it is polled); a failure raises with
    the end of that output."""
    full_env = {**os.environ, **(env or {})}
    print("  $ " + " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    with tempfile.NamedTemporaryFile(suffix=".time") as rusage, tempfile.TemporaryFile("w+") as log:
        prefix = [str(GNU_TIME), "-v", "-o", rusage.name] if GNU_TIME.exists() else []
        start = time.perf_counter()
        proc = subprocess.Popen([*prefix, *map(str, cmd)], env=full_env, cwd=cwd, stdout=log, stderr=log)
        peak = 0.0 if prefix else _poll_tree(proc)
        proc.wait()
        wall = time.perf_counter() - start
        if proc.returncode:
            log.seek(0)
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {log.read()[-2000:]}")
        if prefix:
            found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", Path(rusage.name).read_text())
            peak = int(found.group(1)) / 1024 if found else float("nan")
        return Measured(wall, peak)


def _poll_tree(proc: subprocess.Popen) -> float:
    """Peak summed RSS (MiB) of a process and its descendants, polled until it exits."""
    import psutil

    peak, root = 0, psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        except psutil.Error:
            rss = 0
        peak = max(peak, rss)
        time.sleep(0.05)
    return peak / 2**20


def tree_bytes(paths: Sequence[Path]) -> int:
    total = 0
    for p in paths:
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else []
        files = [f for f in files if f.name != "build.json"]  # this benchmark's record, not the tool's
        total += sum(f.stat().st_size for f in files)
    return total


# ------------------------------------------------------------------------------------------------- tools

# --tools names. mmseqs-db: easy-search against the database without createindex (MMseqs2 then builds the
# k-mer table in memory at each search, in as many splits as memory needs), for a collection whose index
# would not fit on disk (~98 GB at 10^6 genes by the 10^5 figure).
TOOL_KEYS = ("gene-ae", "minimap2", "blastn", "megablast", "mmseqs", "mmseqs-db")
DEFAULT_TOOLS, LONG_TOOLS = ("gene-ae", "blastn", "megablast", "mmseqs"), ("gene-ae", "minimap2", "blastn", "megablast")


@dataclass
class Tool:
    """One row: how to build its index (commands, in a folder shared by tools with the same build), how to
    search it and how to read its hits (query id -> subject ids, best first)."""

    name: str
    build_dir: str
    build: Callable[[Path, Path], list[list[str]]]  # (collection FASTA, build folder) -> commands
    outputs: Callable[[Path], list[Path]]  # build folder -> what the index is made of on disk
    search: Callable[[Path, Path, Path], list[str]]  # (queries FASTA, build folder, hits file) -> command
    parse: Callable[[Path], dict[str, list[str]]]
    env: dict[str, str] = field(default_factory=dict)
    key: str = "gene-ae"  # its --tools name (TOOL_KEYS); every gene-ae variant is "gene-ae"


def ranked(pairs: Sequence[tuple[str, str]], k: int = K) -> dict[str, list[str]]:
    """(query, subject) rows in the tool's order -> each query's first k distinct subjects."""
    out: dict[str, list[str]] = {}
    for q, s in pairs:
        hits = out.setdefault(q, [])
        if s not in hits and len(hits) < k:
            hits.append(s)
    return out


def tabular(path: Path) -> dict[str, list[str]]:
    """BLAST -outfmt 6 and MMseqs2 .m8: query and subject are the first two columns."""
    return ranked([tuple(line.split("\t")[:2]) for line in path.read_text().splitlines() if line])


def paf(path: Path) -> dict[str, list[str]]:
    """minimap2's PAF: query name column 1, target name column 6; a query's primary alignment comes first."""
    return ranked([(f[0], f[5]) for f in (line.split("\t") for line in path.read_text().splitlines() if line)])


def gene_ae_hits(path: Path) -> dict[str, list[str]]:
    lines = path.read_text().splitlines()
    cols = lines[0].split("\t")
    q, s = cols.index("query_id"), cols.index("subject_id")
    return ranked([(f[q], f[s]) for f in (line.split("\t") for line in lines[1:] if line)])


def tools(model: str, threads: int, variants: Sequence[tuple[str, list[str], list[str]]] = (),
          searches: Sequence[tuple[str, list[str]]] = ()) -> list[Tool]:  # fmt: skip
    """The tools in table order: gene-ae with defaults, each search variant (a label and extra `gene-ae search`
    flags, on the default index), each gene-ae variant (a label, extra `gene-ae embed` flags, e.g. compact
    index codecs, and extra `gene-ae search` flags; variants with the same embed flags share one index),
    BLAST+ twice, MMseqs2."""
    t = str(threads)
    torch_env = {"OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t}
    beside = Path(sys.executable).with_name("gene-ae")  # the venv's console script, else the one on PATH
    gene_ae = [str(beside) if beside.exists() else shutil.which("gene-ae") or "gene-ae"]

    def blast(task: str) -> Tool:
        return Tool(
            f"BLAST+ blastn -task {task}", "blastdb",
            lambda fa, d: [["makeblastdb", "-in", fa, "-dbtype", "nucl", "-out", d / "db"]],
            lambda d: [d],
            lambda q, d, out: ["blastn", "-task", task, "-query", q, "-db", d / "db", "-outfmt", "6",
                               "-max_target_seqs", str(K), "-num_threads", t, "-out", out],
            tabular, key=task,
        )  # fmt: skip

    def gene_ae_tool(label: str, flags: list[str], search_flags: Sequence[str] = ()) -> Tool:
        return Tool(
            f"gene-ae ({label})", "gene-ae" + (f"-{re.sub(r'[^A-Za-z0-9]+', '-', ' '.join(flags))}" if flags else ""),
            lambda fa, d: [[*gene_ae, "embed", "--model", model, "--input", fa, "--out", d / "index", *flags]],
            lambda d: [d / "index"],
            lambda q, d, out: [*gene_ae, "search", "--index", d / "index", q, "-k", str(K), "--threads", t, "--out",
                               out, *search_flags],
            gene_ae_hits, torch_env,
        )  # fmt: skip

    return [
        gene_ae_tool("embed + search, defaults", []),
        *(gene_ae_tool(label, [], flags) for label, flags in searches),
        *(gene_ae_tool(label, flags, search_flags) for label, flags, search_flags in variants),
        Tool(
            "minimap2 -x asm20", "minimap2",
            lambda fa, d: [["minimap2", "-x", "asm20", "-t", t, "-d", d / "db.mmi", fa]],
            lambda d: [d / "db.mmi"],
            lambda q, d, out: ["minimap2", "-x", "asm20", "-t", t, "-N", str(K), "-o", out, d / "db.mmi", q],
            paf, key="minimap2",
        ),
        blast("blastn"),
        blast("megablast"),
        Tool(
            "MMseqs2 easy-search (indexed db)", "mmseqs",
            lambda fa, d: [["mmseqs", "createdb", fa, d / "db"],
                           ["mmseqs", "createindex", d / "db", d / "tmp", "--search-type", "3", "--threads", t]],
            lambda d: [f for f in d.glob("db*")],
            lambda q, d, out: ["mmseqs", "easy-search", q, d / "db", out, out.with_suffix(".tmp"), "--search-type",
                               "3", "--threads", t],
            tabular, key="mmseqs",
        ),
        Tool(
            "MMseqs2 easy-search (db, no index)", "mmseqs-db",
            lambda fa, d: [["mmseqs", "createdb", fa, d / "db"]],
            lambda d: [f for f in d.glob("db*")],
            lambda q, d, out: ["mmseqs", "easy-search", q, d / "db", out, out.with_suffix(".tmp"), "--search-type",
                               "3", "--threads", t],
            tabular, key="mmseqs-db",
        ),
    ]  # fmt: skip


@dataclass
class Built:
    """A build's figures, kept beside it (build.json) so --keep can report them without rebuilding."""

    commands: list[list[str]]
    build_s: float
    build_mib: float
    index_bytes: int


def build(tool: Tool, collection: Path, root: Path, keep: bool, done: dict[str, Built]) -> Built:
    if tool.build_dir in done:  # BLAST's two tasks share one database
        return done[tool.build_dir]
    d = root / tool.build_dir
    commands = [list(map(str, c)) for c in tool.build(collection, d)]
    record = d / "build.json"
    if keep and record.is_file() and json.loads(record.read_text())["commands"] == commands:
        done[tool.build_dir] = Built(**json.loads(record.read_text()))
        print(f"{tool.name}: reusing the index in {d}", file=sys.stderr, flush=True)
        return done[tool.build_dir]
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    steps = [run_measured(c, tool.env) for c in commands]
    shutil.rmtree(d / "tmp", ignore_errors=True)  # MMseqs2's scratch: not part of the index
    built = Built(commands, sum(s.wall_s for s in steps), max(s.peak_mib for s in steps), tree_bytes(tool.outputs(d)))
    record.write_text(json.dumps(asdict(built)))
    done[tool.build_dir] = built
    return built


@dataclass
class Searched:
    hits: dict[str, list[str]]
    all_: Measured
    one: Measured
    reused: bool = False  # the figures of an earlier run's search (--keep), same command, collection and queries


def search(tool: Tool, root: Path, queries: Path, one_query: Path, keep: bool = False) -> Searched:
    """Both searches (all queries, one query), measured; with `keep`, a search whose hits and figures an
    earlier run left beside the same command (its .json) is reused, not run again (`Searched.reused`)."""
    d = root / tool.build_dir
    runs, reused = {}, False
    built = (d / "build.json").read_text()  # a search is reused only against the very index it searched
    for name, q in (("all", queries), ("one", one_query)):
        out = root / "hits" / f"{re.sub(r'[^A-Za-z0-9]+', '-', tool.name).strip('-')}-{name}.tsv"
        cmd = [str(x) for x in tool.search(q, d, out)]
        record = out.with_suffix(".json")
        old = json.loads(record.read_text()) if record.is_file() else {}
        if keep and out.is_file() and old.get("command") == cmd and old.get("index") == built:
            runs[name], reused = (Measured(**json.loads(record.read_text())["measured"]), out), True
            continue
        out.parent.mkdir(exist_ok=True)
        out.unlink(missing_ok=True)
        shutil.rmtree(out.with_suffix(".tmp"), ignore_errors=True)
        runs[name] = (run_measured(cmd, tool.env), out)
        shutil.rmtree(out.with_suffix(".tmp"), ignore_errors=True)
        record.write_text(json.dumps({"command": cmd, "index": built, "measured": asdict(runs[name][0]),
                                      "at": time.ctime()}))  # fmt: skip
    return Searched(tool.parse(runs["all"][1]), runs["all"][0], runs["one"][0], reused)


# --------------------------------------------------------------------------------------------- training


def train_model(
    grown: Grown, root: Path, steps: int, config: str | None, threads: int, keep: bool
) -> tuple[str, float]:
    """Shard a sample of the collection, train on it with `python -m gene_ae.train` (study.train_cli);
    (checkpoint, seconds, the sharding included)."""
    d = root / "train"
    record = d / "trained.json"
    wanted = {"steps": steps, "config": config, "threads": threads}
    if keep and record.is_file() and json.loads(record.read_text())["settings"] == wanted:
        done = json.loads(record.read_text())
        return done["checkpoint"], done["seconds"]
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    pick = np.sort(rng.choice(len(grown.ids), min(TRAIN_SAMPLE, len(grown.ids)), replace=False))
    write_fasta(d / "sample.fa", [grown.ids[i] for i in pick], [grown.seqs[i] for i in pick])
    start = time.perf_counter()
    run_measured([str(Path(sys.executable).parent / "shard-fasta"), str(d / "sample.fa"), str(d / "shards"), "--quiet"])
    extra = ["--workers", "1", "--set", f"train.threads_per_worker={threads}"]
    extra += ["--config", str(Path(config).resolve())] if config else []
    checkpoint, _ = train_cli(d / "shards", d, "peer-bench", steps, extra, {"OMP_NUM_THREADS": str(threads)})
    seconds = time.perf_counter() - start
    record.write_text(json.dumps({"settings": wanted, "checkpoint": str(checkpoint), "seconds": seconds}))
    return str(checkpoint), seconds


# ------------------------------------------------------------------------------------------------ scoring


def recalls(hits: dict[str, list[str]], queries: Queries, grown: Grown) -> dict[str, list[float]]:
    """recall@1, recall@10 and family recall@1, one value per query group; a query with no hits is a miss."""
    from gene_ae.evaluate.metrics import identical_members

    targets = identical_members(grown.seqs, np.array(queries.source))
    family = dict(zip(grown.ids, grown.family))
    scores: dict[str, dict[str, list[bool]]] = {"r1": {}, "r10": {}, "fam1": {}}
    for qid, src, g, same, given in zip(queries.ids, queries.source, queries.group, targets, queries.truth):
        found = hits.get(qid, [])
        truth = {grown.ids[i] for i in (same if given is None else given)}
        scores["r1"].setdefault(g, []).append(bool(found) and found[0] in truth)
        scores["r10"].setdefault(g, []).append(any(h in truth for h in found[:K]))
        scores["fam1"].setdefault(g, []).append(bool(found) and family.get(found[0]) == grown.family[src])
    groups = list(dict.fromkeys(queries.group))
    return {name: [float(np.mean(by_g[g])) for g in groups] for name, by_g in scores.items()}


def table(rows: list[tuple[Tool, Built, Searched, dict[str, list[float]]]], n_queries: int, groups: list[str],
          family: bool = True) -> str:  # fmt: skip
    per = " / ".join(groups)
    keys = ("r1", "r10", "fam1") if family else ("r1", "r10")
    header = ["tool", "build s", "build peak MiB", "index MiB", "s/query (whole process)", "s (one query)",
              "ms/query (marginal)", "search peak MiB", f"recall@1 {per}", f"recall@10 {per}",
              *([f"family recall@1 {per}"] if family else []), "marginal / gene-ae",
              "index bytes / gene-ae"]  # fmt: skip
    whole = [s.all_.wall_s / n_queries for _, _, s, _ in rows]
    marginal = [(s.all_.wall_s - s.one.wall_s) / max(n_queries - 1, 1) for _, _, s, _ in rows]
    ref = 0  # gene-ae is the first row
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, (tool, b, s, r) in enumerate(rows):
        cells = [tool.name, f"{b.build_s:.1f}", f"{b.build_mib:,.0f}", f"{b.index_bytes / 2**20:,.1f}",
                 f"{whole[i]:.3f}", f"{s.one.wall_s:.2f}", f"{1e3 * marginal[i]:.1f}", f"{s.all_.peak_mib:,.0f}",
                 *(" / ".join(f"{v:.2f}" for v in r[key]) for key in keys),
                 _ratio(marginal[i], marginal[ref]), f"{b.index_bytes / rows[ref][1].index_bytes:.2f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "n/a"


# ---------------------------------------------------------------------------------------------------- main


def _labelled(given: Sequence[str]) -> list[tuple[str, list[str]]]:
    """--search-variant values, LABEL=FLAGS, as (label, flags)."""
    return [(label, flags.split()) for label, _, flags in (v.partition("=") for v in given)]


def _variants(given: Sequence[str]) -> list[tuple[str, list[str], list[str]]]:
    """--variant values, LABEL=EMBED_FLAGS [:: SEARCH_FLAGS], as (label, embed flags, search flags)."""
    out = []
    for label, _, flags in (v.partition("=") for v in given):
        embed, _, search = flags.partition("::")
        out.append((label, embed.split(), search.split()))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="gene-ae model: a checkpoint directory or models:/ URI")
    which.add_argument("--train-steps", type=int, help="train a model for this many steps first (instead of --model)")
    p.add_argument("--train-config", help="with --train-steps: a TOML config for python -m gene_ae.train")
    p.add_argument("--n", type=int, default=100_000, help="records in the grown collection (--real: at most this many)")
    p.add_argument(
        "--real", metavar="FASTA",
        help="a real collection instead of a grown one (e.g. SILVA from Debian's ncbi-rrna-data, extracted with "
        "blastdbcmd -entry all); adds the reverse-complement and exact-piece query cases",
    )  # fmt: skip
    p.add_argument(
        "--real-windows", action="store_true",
        help="a real collection of 1-100 kb genome windows (every shared bacterial and viral genome, strains as "
        "they are; use with --long) instead of a grown one; adds the reverse-complement and exact-piece cases",
    )  # fmt: skip
    p.add_argument(
        "--search-variant", action="append", default=[], metavar="LABEL=FLAGS",
        help="one more gene-ae row searching the default index with these extra `gene-ae search` flags "
        "(repeatable), e.g. 'k-mers only=--sources sparse'",
    )  # fmt: skip
    p.add_argument("--queries", type=int, default=50, help="sampled members per divergence")
    p.add_argument("--family", type=float, default=8.0, help="mean family size (founders: min(seeds, n / this))")
    p.add_argument("--threads", type=int, default=2, help="threads per tool")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="/tmp/peer-bench", help="scratch folder")
    p.add_argument("--keep", action="store_true", help="reuse the collection, indexes and model of an earlier run")
    p.add_argument("--quick", action="store_true", help="smoke run: n 2000, 10 queries per divergence")
    p.add_argument("--out", help="also write the table to this markdown file")
    p.add_argument(
        "--tools",
        help=f"rows to run, of {','.join(TOOL_KEYS)} (default: {','.join(DEFAULT_TOOLS)}; "
        f"with --long: {','.join(LONG_TOOLS)})",
    )
    p.add_argument(
        "--long",
        action="store_true",
        help="loci and genome windows of 1-100 kb instead of genes (defaults: --n 2000 --family 5 --queries 30)",
    )
    p.add_argument(
        "--variant", action="append", default=[], metavar="LABEL=FLAGS",
        help="one more gene-ae row, its index built with these extra `gene-ae embed` flags (repeatable), e.g. "
        "'sq8=--vector-codec sq8'; flags after ' :: ' go to its `gene-ae search` (rows with the same embed flags "
        "share one index)",
    )  # fmt: skip
    given = set(a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]))
    args = p.parse_args(argv)
    if args.long:  # the sizes of issue 18's long-sequence figures, unless given
        for flag, value in (("--n", 2000), ("--family", 5.0), ("--queries", 30)):
            if flag not in given:
                setattr(args, flag[2:], value)
    if args.quick:
        args.n, args.queries = (300, 5) if args.long else (2000, 10)
    args.tools = args.tools or ",".join(LONG_TOOLS if args.long else DEFAULT_TOOLS)
    if args.real and args.real_windows:
        p.error("--real and --real-windows: one collection")
    real = bool(args.real or args.real_windows)
    if args.real_windows:
        name = "real-windows"
    else:
        name = f"real-{Path(args.real).stem}-n{args.n}" if args.real else f"n{args.n}-f{args.family:g}"
    root = Path(args.work) / f"{'long-' if args.long else ''}{name}-s{args.seed}"
    root.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    if args.real_windows:
        grown = real_windows(args.seed)
    elif args.real:
        grown = read_real(Path(args.real), args.n)
    else:
        grown = grow(seed_loci(args.seed) if args.long else seed_genes(), args.n, args.family, args.seed)
    collection = root / "collection.fa"
    if not (args.keep and collection.is_file()):
        write_fasta(collection, grown.ids, grown.seqs)
    # a query is a sequence, not an assembly gap: real windows with over 1 % N (SARS-CoV-2 dropouts) stay in the
    # collection but are not copied into queries (an exact 300-base piece of one could hold no base at all)
    from shard_tools.alphabet import FIRST_BASE

    acgt = [np.mean((s >= FIRST_BASE) & (s < FIRST_BASE + 4)) for s in grown.seqs] if args.real_windows else None
    eligible = None if acgt is None else np.array(acgt) >= 0.99
    queries = make_queries(grown, args.queries, args.seed + 1, cases=real, eligible=eligible)
    write_fasta(root / "queries.fa", queries.ids, queries.seqs)
    write_fasta(root / "one-query.fa", queries.ids[:1], queries.seqs[:1])
    sizes = np.bincount(grown.family)
    what = f"{len(grown.ids):,} records, {sizes.size:,} families (largest {sizes.max():,}), {len(queries.ids)} queries"
    print(f"collection: {what}, in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    train_note = ""
    model = args.model
    if args.train_steps:
        model, train_s = train_model(grown, root, args.train_steps, args.train_config, args.threads, args.keep)
        sample = min(TRAIN_SAMPLE, args.n)
        train_note = f" (trained {args.train_steps} steps on {sample:,} records in {train_s:.0f} s, not in build s)"

    rows, done = [], {}
    chosen = [t for t in tools(model, args.threads, _variants(args.variant), _labelled(args.search_variant))
              if t.key in args.tools.split(",")]  # fmt: skip
    if not chosen:
        p.error(f"--tools {args.tools!r}: none of {', '.join(TOOL_KEYS)}")
    for tool in chosen:
        print(f"{tool.name}:", file=sys.stderr, flush=True)
        built = build(tool, collection, root, args.keep, done)
        searched = search(tool, root, root / "queries.fa", root / "one-query.fa", args.keep)
        rows.append((tool, built, searched, recalls(searched.hits, queries, grown)))
        print(f"  build {built.build_s:.1f} s, search {searched.all_.wall_s:.1f} s", file=sys.stderr, flush=True)

    memory = "GNU time -v max RSS" if GNU_TIME.exists() else "psutil-polled RSS of the process tree"
    command = "python benchmarks/peer_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (
        f"`{command}` on {platform.node()} ({os.cpu_count()} CPUs, {args.threads} threads per tool): "
        f"{len(grown.ids):,} records in {sizes.size:,} families, {args.queries} queries per divergence; model "
        f"{model}{train_note}; load average at the end {os.getloadavg()[0]:.1f}; peak memory: {memory}; "
        "BLAST's two tasks share one database (one build)."
        + "".join(f" {t.name}: search figures reused from an earlier run (--keep)." for t, _, s, _ in rows if s.reused)
        + "\n\n"
        + table(rows, len(queries.ids), list(dict.fromkeys(queries.group)), family=not real)
        + "\n"
    )
    return emit(text, args.out)


if __name__ == "__main__":
    sys.exit(main())
