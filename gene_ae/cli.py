"""`gene-ae embed | search | eval | reconstruct | promote`: thin argument parsing over the library."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def _reader_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="auto", choices=("auto", "fasta", "fastq", "tsv", "csv"), help="input format")
    p.add_argument("--seq-column", default="sequence", help="table column holding the sequence")
    p.add_argument("--id-column", default=None, help="table column holding the id")
    p.add_argument("--label-column", default=None, help="table column holding a label (e.g. class)")


def _records(path: str, args: argparse.Namespace, splits: tuple[str, ...] = ("train", "val")) -> Iterator[tuple]:
    """(id, tokens, label) from a FASTA/FASTQ/TSV file, '-' (stdin) or a shard directory."""
    from gene_ae.evaluate import parse_label
    from shard_tools.inputs import ReaderConfig, read_records
    from shard_tools.reader import read_shards

    if Path(path).is_dir():
        for split in splits:
            for rid, tokens, meta in read_shards(path, split):
                yield rid, tokens, meta.get("label") or parse_label(f"{rid} {meta.get('desc', '')}")
        return
    if path == "-":
        with tempfile.NamedTemporaryFile(delete=False, suffix=".fa") as tmp:
            tmp.write(sys.stdin.buffer.read())
        path = tmp.name
    cfg = ReaderConfig(args.format, args.seq_column, args.id_column, args.label_column)
    for rec in read_records(path, cfg):
        yield rec.id, rec.tokens, rec.fields.get("label") or parse_label(f"{rec.id} {rec.description}")


def cmd_embed(args: argparse.Namespace) -> int:
    from gene_ae import index
    from gene_ae.encoder import Encoder
    from gene_ae.tracking import resolve_version
    from gene_ae.windows import window_starts

    encoder = Encoder.load(args.model)
    entries, pieces = [], []
    for rid, tokens, label in _records(args.input, args):
        if args.windows:
            stride = args.stride or encoder.window // 2
            for start in window_starts(tokens.size, encoder.window, stride):
                end = min(int(start) + encoder.window, int(tokens.size))
                entries.append(index.Entry(rid, int(tokens.size), label, int(start), end))
                pieces.append(tokens[start:end])
        else:
            entries.append(index.Entry(rid, int(tokens.size), label, 0, int(tokens.size)))
            pieces.append(tokens)
    if not entries:
        raise ValueError(f"{args.input}: no sequences to embed")
    if args.ray:
        vectors = _embed_with_ray(args.model, pieces, args.batch_size, args.ray_workers)
    else:
        vectors = _embed_local(encoder, pieces, args.batch_size)
    model_uri = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    meta = index.IndexMeta(model_uri, resolve_version(args.model), encoder.dim, args.index, args.windows, entries)
    index.save(args.out, vectors, meta, overwrite=args.overwrite)
    print(
        f"gene-ae embed: {len(entries):,} vectors ({meta.kind}, dim {encoder.dim}) from {args.input} -> {args.out}",
        file=sys.stderr,
    )
    return 0


def _embed_local(encoder, pieces: list[np.ndarray], batch_size: int) -> np.ndarray:
    show = sys.stderr.isatty()
    chunk = max(batch_size * 8, 256)
    out = []
    iterator = range(0, len(pieces), chunk)
    if show:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="embed", unit="chunk", file=sys.stderr)
    for start in iterator:
        out.append(encoder.embed_tokens(pieces[start : start + chunk], batch_size))
    return np.concatenate(out)


def _embed_with_ray(model_uri: str, pieces: list[np.ndarray], batch_size: int, workers: int) -> np.ndarray:
    """The same embedding as Ray Data map_batches, for collections beyond one machine."""
    import ray

    from shard_tools.alphabet import decode

    class EmbedBatch:
        def __init__(self, uri: str):
            from gene_ae.encoder import Encoder

            self.encoder = Encoder.load(uri)

        def __call__(self, batch: dict) -> dict:
            return {"i": batch["i"], "vec": self.encoder.embed(list(batch["seq"]), batch_size)}

    if not ray.is_initialized():
        ray.init(include_dashboard=False)  # joins the cluster when RAY_ADDRESS is set, else starts a local Ray
    ds = ray.data.from_items([{"i": i, "seq": decode(p)} for i, p in enumerate(pieces)])
    rows = ds.map_batches(
        EmbedBatch, fn_constructor_args=(model_uri,), batch_size=batch_size, concurrency=workers
    ).take_all()
    out = np.zeros((len(pieces), len(rows[0]["vec"])), dtype=np.float32)
    for row in rows:
        out[row["i"]] = row["vec"]
    return out


def cmd_search(args: argparse.Namespace) -> int:
    from gene_ae import align, index
    from gene_ae.encoder import Encoder

    if args.rerank < 0:
        raise ValueError(f"--rerank must be 0 (off) or a number of hits to align, got {args.rerank}")
    faiss_index, meta = index.load(args.index)
    encoder = Encoder.load(args.model or meta.model_uri)
    if encoder.dim != meta.dim:
        raise ValueError(
            f"{args.index}: index has dim {meta.dim}, model {encoder.dim}: use the model it was built with"
        )
    queries = list(_records(args.query, args))
    if not queries:
        raise ValueError(f"{args.query}: no query sequences")
    subjects = _collection(args, meta) if args.rerank else {}
    vectors = encoder.embed_tokens([q[1] for q in queries], args.batch_size)
    depth = max(args.k, args.rerank)
    sims, idx = index.search(faiss_index, vectors, depth * (4 if meta.windows else 1))
    out = open(args.out, "w") if args.out else sys.stdout
    cols = ["query_id", "subject_id", "rank", "similarity", "query_length", "subject_length", "subject_label"]
    if meta.windows:
        cols += ["subject_start", "subject_end"]
    if args.rerank:
        cols += ["identity"]
    print("\t".join(cols), file=out)
    for (qid, qtok, _), row_sims, row_idx in zip(queries, sims, idx):
        hits, seen = [], set()
        for sim, j in zip(row_sims, row_idx):
            e = meta.entries[j] if j >= 0 else None
            key = e and ((e.id, e.start) if meta.windows else e.id)
            if e is None or key in seen or len(hits) >= depth:
                continue
            seen.add(key)
            hits.append((e, float(sim), None))
        if args.rerank:
            head = hits[: args.rerank]
            order, ident = align.rerank(qtok, [_subject(subjects, e, meta.windows) for e, _, _ in head])
            hits = [(head[o][0], head[o][1], float(i)) for o, i in zip(order, ident)] + hits[args.rerank :]
        for rank, (e, sim, ident) in enumerate(hits[: args.k], start=1):
            fields = [qid, e.id, rank, f"{sim:.4f}", qtok.size, e.length, e.label or ""]
            if meta.windows:
                fields += [e.start, e.end]
            if args.rerank:
                fields.append(f"{ident:.4f}" if ident is not None else "")
            print("\t".join(map(str, fields)), file=out)
    if args.out:
        out.close()
    return 0


def _collection(args: argparse.Namespace, meta) -> dict[str, np.ndarray]:
    """The indexed records' sequences, by id, from --collection (needed to align against for --rerank)."""
    if not args.collection:
        raise ValueError("--rerank needs --collection: the FASTA/FASTQ/TSV the index was built from")
    wanted = {e.id for e in meta.entries}
    seqs = {rid: tokens for rid, tokens, _ in _records(args.collection, args) if rid in wanted}
    missing = wanted - seqs.keys()
    if missing:
        raise ValueError(
            f"{args.collection}: {len(missing):,} indexed records are not in it (e.g. {sorted(missing)[0]!r}); "
            "give the file the index was built from"
        )
    return seqs


def _subject(subjects: dict[str, np.ndarray], e, windows: bool) -> np.ndarray:
    tokens = subjects[e.id]
    return tokens[e.start : e.end] if windows else tokens


def cmd_eval(args: argparse.Namespace) -> int:
    from gene_ae.encoder import Encoder
    from gene_ae.evaluate import EvalConfig, run_eval

    try:
        re.compile(args.label_regex or "")
    except re.error as exc:
        raise ValueError(f"--label-regex {args.label_regex!r}: {exc}") from None
    encoder = Encoder.load(args.model)
    recs = list(_records(args.input, args, splits=(args.split,)))
    if not recs:
        raise ValueError(f"{args.input}: no sequences to evaluate")
    ids, seqs, labels = (list(x) for x in zip(*recs))
    cross = None
    if args.queries:
        q = list(_records(args.queries, args, splits=(args.split,)))
        cross = ([r[1] for r in q], [r[2] for r in q])
    methods = ("gene-ae", "5-mer") + (() if args.no_sourmash else ("sourmash",))
    cfg = EvalConfig(n_queries=args.n_queries, seed=args.seed, methods=methods)
    cfg.rerank, cfg.label_regex = args.rerank, args.label_regex or ""
    has_labels = any(lab is not None for lab in labels)
    report = run_eval(
        encoder, seqs, ids, labels if has_labels else None, cfg, args.out, args.mlflow_run, cross_queries=cross
    )
    mr = report["mutation_retrieval"]
    print(f"gene-ae eval: {len(seqs):,} sequences; report in {args.out}/report.md", file=sys.stderr)
    print(Path(args.out, "report.md").read_text() if args.print else _headline(mr), end="")
    return 0


def _headline(mr: dict) -> str:
    """recall@1 per method and divergence, the figure users ask for first."""
    ds = "  ".join(f"{d:>6.0%}" for d in mr["divergences"])
    width = max(10, *(len(m) for m in mr["methods"]))
    lines = [f"{'recall@1':{width}s}  {ds}\n"]
    for method, scores in mr["methods"].items():
        lines.append(f"{method:{width}s}  " + "  ".join(f"{v:6.3f}" for v in scores["recall@1"]) + "\n")
    return "".join(lines)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from gene_ae.encoder import Encoder
    from shard_tools.alphabet import decode

    encoder = Encoder.load(args.model)
    out = open(args.out, "w") if args.out else sys.stdout
    print("id\tlength\tidentity\treconstruction", file=out)
    for rid, tokens, _ in _records(args.input, args):
        rec = encoder.reconstruct_tokens(tokens)
        identity = float((rec == tokens).mean())
        print(f"{rid}\t{tokens.size}\t{identity:.4f}\t{decode(rec)}", file=out)
    if args.out:
        out.close()
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from gene_ae.tracking import promote_if_better, set_alias

    if args.if_better:
        won = promote_if_better(args.model, args.version, args.alias)
        print(f"gene-ae promote: {args.model}/{args.version} {'is now' if won else 'did not beat'} @{args.alias}")
    else:
        set_alias(args.model, args.version, args.alias)
        print(f"gene-ae promote: models:/{args.model}@{args.alias} -> version {args.version}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gene-ae",
        description="Embed DNA sequences with a trained gene-ae encoder, "
        "search collections by vector similarity, evaluate against k-mer methods.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    model_help = "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/encoder, or a checkpoint directory"

    e = sub.add_parser("embed", help="embed a collection and write a vector index")
    e.add_argument("--model", required=True, help=model_help)
    e.add_argument("--input", required=True, help="FASTA/FASTQ/TSV file or shard directory")
    e.add_argument("--out", required=True, help="index directory to write")
    e.add_argument("--index", default="auto", choices=("auto", "flat", "hnsw"), help="faiss index kind")
    e.add_argument("--windows", action="store_true", help="index windows of long sequences (search reports where)")
    e.add_argument("--stride", type=int, default=0, help="window stride with --windows (default: half a window)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--ray", action="store_true", help="embed with Ray Data map_batches (joins RAY_ADDRESS if set)")
    e.add_argument("--ray-workers", type=int, default=2, help="embedding actors with --ray")
    e.add_argument("--overwrite", action="store_true", help="replace an existing index directory")
    _reader_args(e)
    e.set_defaults(func=cmd_embed)

    s = sub.add_parser("search", help="search an index with query sequences; TSV hits")
    s.add_argument("--index", required=True, help="index directory from `gene-ae embed`")
    s.add_argument("query", help="query FASTA/FASTQ/TSV file, or - for stdin")
    s.add_argument("-k", type=int, default=10, help="hits per query")
    s.add_argument("--model", help="override the model recorded in the index")
    s.add_argument("--out", help="write hits here instead of stdout")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument(
        "--rerank", type=int, default=0, metavar="N",
        help="align each query to its top N hits (edlib) and order them by identity (adds an identity column)",
    )  # fmt: skip
    s.add_argument("--collection", help="with --rerank: the FASTA/FASTQ/TSV the index was built from")
    _reader_args(s)
    s.set_defaults(func=cmd_search)

    v = sub.add_parser("eval", help="how good is search: gene-ae vs 5-mer and sourmash, side by side")
    v.add_argument("--model", required=True, help=model_help)
    v.add_argument("--input", required=True, help="FASTA/FASTQ/TSV file or shard directory (its --split)")
    v.add_argument("--out", required=True, help="report directory (report.json, report.md, PNG plots)")
    v.add_argument("--queries", help="a second labelled set queried against --input (e.g. dog against chimp)")
    v.add_argument("--split", default="val", help="shard split to evaluate on (default val: unseen in training)")
    v.add_argument("--n-queries", type=int, default=200, help="mutated queries per divergence")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument(
        "--rerank", type=int, default=0, metavar="N",
        help="also score every method with its top N hits re-ordered by alignment identity ('+align' rows)",
    )  # fmt: skip
    v.add_argument(
        "--label-regex",
        help="group labels by this regex's first group, e.g. '^(clade_I+b?)' to compare top-level clades; "
        "labels it does not match are left out (placeholders like 'unlabelled' always are)",
    )
    v.add_argument("--no-sourmash", action="store_true", help="skip the sourmash baseline")
    v.add_argument("--mlflow-run", help="log the report to this MLflow run id")
    v.add_argument("--print", action="store_true", help="print the whole markdown report")
    _reader_args(v)
    v.set_defaults(func=cmd_eval)

    r = sub.add_parser("reconstruct", help="decode each record from its latent; identity to the input")
    r.add_argument("--model", required=True, help=model_help)
    r.add_argument("--input", required=True, help="FASTA/FASTQ/TSV file")
    r.add_argument("--out", help="write TSV here instead of stdout")
    _reader_args(r)
    r.set_defaults(func=cmd_reconstruct)

    m = sub.add_parser("promote", help="point an alias (e.g. production) at a registered version")
    m.add_argument("--model", default="gene-ae-encoder", help="registered model name")
    m.add_argument("--version", required=True)
    m.add_argument("--alias", default="production")
    m.add_argument("--if-better", action="store_true", help="only if its validation recall beats the holder's")
    m.set_defaults(func=cmd_promote)
    return p


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except (ValueError, OSError, KeyError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"gene-ae {args.command}: error: {msg}", file=sys.stderr)
        code = 1
    except Exception as exc:  # MLflow registry errors and the like: still one line
        if type(exc).__name__ not in ("MlflowException", "RestException"):
            raise
        print(f"gene-ae {args.command}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        code = 1
    sys.exit(code)
