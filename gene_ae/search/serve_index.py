"""An index on Ray Serve: a deployment per index shard, an HTTP ingress that answers as `gene-ae search`.

    POST /search  {"sequences": [{"id": "q1", "sequence": "ACGT..."}], "k": 10, "rerank": 40, "fast": false,
                   "allow_partial": false}
      200   {"hits": [{"query_id", "subject_id", "rank", "similarity", ...}], "partial": false, "missing_shards": []}
      400   {"error": "request: record 'q2': ..."}              bad input, one line naming the record
      503   {"error": "...", "partial": true, "missing_shards": ["shard-00001"]}   a shard did not answer

Why this split: search is `ask` (embed the queries once) -> `shard_hits` per index shard -> `finish` (merge,
fuse, align, rank) in gene_ae/search/engine.py. The ingress runs the two ends, the replicas of each index shard's
deployment run the middle one on the index shard they hold, so the endpoint's hits are the library's hits (and
the CLI's) by construction. ("Shard" here is always an index shard, gene_ae/index/collection.py; a deployment
is the Serve unit that holds one.)

An index shard deployment call that fails (its replica died, or the call timed out) is retried on whatever
replica Serve routes it to next (the controller replaces a dead one), with a doubling backoff. An index shard
that still does not answer makes the response 503, never a silently shorter list; a client that prefers the
other shards' hits sends `"allow_partial": true` and gets 200 with `"partial": true` and the missing shards named.

The ingress holds index shard 0 open (the query checks and the provenance check, as the CLI does) and every
shard's record list and sequence store (re-ranking aligns against them); each index shard deployment opens only
its own directory. Nothing here imports the model: the ingress is given a picklable `Loader` that returns `embed`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gene_ae.core.features import FeatureColumns
from gene_ae.index.collection import Collection, read_shards_file
from gene_ae.index.directory import IndexDir, read_meta
from gene_ae.index.seqstore import SequenceStore
from gene_ae.model.features import check_given
from gene_ae.search import checks, engine
from gene_ae.search.candidates import DEFAULT_SOURCES, PieceHits, QueryPieces, shard_hits
from gene_ae.search.columns import Query, json_rows
from gene_ae.search.limits import SEARCH_LIMITS
from shard_tools.declared import DeclaredFeature
from shard_tools.record import InputError, Record, make_record

APP_NAME, ROUTE = "gene-ae", "/search"
FIRST_INDEX_SHARD = "shard-00000"  # the index directory itself, shard 0 of a collection (collection.py)
# (embed, the features the model's vector takes) for searching the collection whose shard 0 is given.
Loader = Callable[[IndexDir], tuple[engine.Embed, tuple[DeclaredFeature, ...]]]


@dataclass
class ServeConfig:
    """How the index is served; the search settings come with each request (k, rerank), as on the CLI."""

    replicas: int = 1  # replicas of each index shard's deployment, and of the ingress
    cpus: float = 1.0  # CPUs each replica reserves (a fraction packs several on one node)
    retries: int = 5  # further tries of a failed index shard call (a killed replica is replaced in a few seconds)
    backoff_s: float = 0.25  # wait before the first retry, doubled after each: 0.25 + 0.5 + ... + 4 s for 5
    shard_timeout_s: float = 120.0  # one index shard deployment call
    max_ongoing_requests: int = 16  # per replica, before Serve queues
    batch_size: int = 64  # encoder batch size
    max_sequences: int = 10_000  # per request


@dataclass
class SearchRequest:
    """A parsed request body: the records as the readers make them (shard_tools.inputs.Record)."""

    records: list[Record]
    features: dict[str, list] | None
    cfg: engine.SearchConfig
    allow_partial: bool = False

    @property
    def tokens(self) -> list[np.ndarray]:
        return [r.tokens for r in self.records]


# ------------------------------------------------------------------------------------------- the deployments


class IndexShardDeployment:
    """A replica of one index shard's Serve deployment: opens only that index shard's directory and answers
    `shard_hits` for the ingress's pieces."""

    def __init__(self, path: str, offset: int, removed: Sequence[int]):
        self.shard = IndexDir.open(path)
        self.offset = offset
        n = len(self.shard.meta.entries)
        self.allowed = None
        if len(removed):
            self.allowed = np.ones(n, dtype=bool)
            self.allowed[np.asarray(removed, dtype=np.int64)] = False

    def hits(self, asked: QueryPieces, n: int) -> dict[str, PieceHits]:
        return shard_hits(self.shard, self.offset, asked, n, self.allowed)


class SearchIngress:
    """The HTTP endpoint: parses, embeds once, fans out to every shard deployment concurrently, finishes."""

    def __init__(self, index: str, load: Loader, names: list[str], deployments: list, cfg: ServeConfig):
        self.collection = Collection.open(index, opener=_catalogue_opener(Path(index)))
        self.embed, self.needed = load(self.collection.shards[0])
        self.sources = engine.default_sources(self.collection.shards[0].meta.sparse)  # as `gene-ae search` reads
        self.entries = self.collection.entries
        self.names, self.deployments, self.cfg = names, deployments, cfg
        self._shape = engine.merge_shapes([engine.shard_shape(s) for s in self.collection.shards])
        self._space = engine.search_space(self.collection)
        self._cpu = asyncio.Lock()  # one request embeds or aligns at a time (the sequence store's cache is shared)

    async def __call__(self, request) -> object:
        from starlette.responses import JSONResponse

        if request.method != "POST":
            return JSONResponse({"error": f"{request.method}: POST a JSON body"}, status_code=405)
        try:
            asked = parse_request(parse_body(await request.body()), self.needed, self.cfg, self.sources)
            checks.check_queries(self.collection.shards[0], asked.records, "request")
        except ValueError as exc:
            return JSONResponse({"error": _one_line(exc)}, status_code=400)
        status, payload = await self.search(asked)
        return JSONResponse(payload, status_code=status)

    async def search(self, req: SearchRequest) -> tuple[int, dict]:
        """(HTTP status, body) for a parsed request."""
        tokens = req.tokens
        async with self._cpu:
            pieces = await asyncio.to_thread(engine.ask, self._shape, tokens, self.embed, req.cfg, req.features)
        n = engine.depth(req.cfg)
        answers = await asyncio.gather(*(self._call(i, "hits", pieces, n) for i in range(len(self.deployments))))
        missing = [name for name, a in zip(self.names, answers) if a is None]
        present = [a for a in answers if a is not None]
        if (missing and not req.allow_partial) or not present:
            return 503, _unavailable(missing)
        subject = self.collection.sequence if req.cfg.rerank else None
        async with self._cpu:
            results = await asyncio.to_thread(engine.finish, tokens, pieces, present, req.cfg, subject, self._space)
        rows = hit_records(req.records, results, self.entries)
        return 200, {"hits": rows, "partial": bool(missing), "missing_shards": missing}

    async def _call(self, i: int, method: str, *args):
        """One index shard deployment's answer, retried on failure; None when it never came."""
        from ray.exceptions import RayActorError, WorkerCrashedError
        from ray.serve.exceptions import RayServeException, RequestCancelledError

        wait = self.cfg.backoff_s
        for attempt in range(self.cfg.retries + 1):
            try:
                call = getattr(self.deployments[i], method).remote(*args)
                try:
                    return await asyncio.wait_for(_awaited(call), self.cfg.shard_timeout_s)
                except TimeoutError:
                    call.cancel()  # not left running on the replica
                    raise
            except (RayActorError, WorkerCrashedError, RayServeException, RequestCancelledError, TimeoutError):
                if attempt == self.cfg.retries:
                    return None
                await asyncio.sleep(wait)
                wait *= 2
        return None


async def _awaited(response):
    return await response


def _unavailable(missing: list[str]) -> dict:
    shown = ", ".join(missing)
    return {
        "error": f'shard(s) {shown} did not answer after retries; ask again, or send "allow_partial": true for '
        "the other shards' hits (flagged partial)",
        "partial": True,
        "missing_shards": missing,
    }


def _one_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------------------------------------------------- requests, hits


def parse_body(raw: bytes) -> object:
    """The request body's JSON; ValueError for anything else, arrays nested deeper than the parser goes included
    (its RecursionError was answered 500)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"request: not JSON ({_one_line(exc)})") from None


def parse_request(
    body: object, needed: Sequence[DeclaredFeature], cfg: ServeConfig, sources: tuple[str, ...] = DEFAULT_SOURCES
) -> SearchRequest:
    """The request body, validated as the readers validate a file (shard_tools.inputs): one-line errors naming
    the record. `needed`: the features the model's vector takes, which every record must carry; `sources`: the
    candidate lists the index is searched by (engine.default_sources)."""
    if not isinstance(body, dict) or not isinstance(body.get("sequences"), list):
        raise ValueError('request: a JSON object with "sequences": [{"id": ..., "sequence": ...}, ...] expected')
    unknown = set(body) - {"sequences", "k", "rerank", "fast", "allow_partial"}
    if unknown:
        raise ValueError(
            f"request: unknown field {sorted(unknown)[0]!r} (known: sequences, k, rerank, fast, allow_partial)"
        )
    records = body["sequences"]
    if not records or len(records) > cfg.max_sequences:
        raise ValueError(f"request: {len(records)} sequences; send 1 to {cfg.max_sequences:,}")
    fast = body.get("fast", False)
    if not isinstance(fast, bool):
        raise ValueError(f"request: fast must be true or false, got {fast!r}")
    search_cfg = engine.SearchConfig(k=_int(body, "k", engine.SearchConfig.k), batch_size=cfg.batch_size,
                                     sources=sources)  # fmt: skip
    if fast:  # `gene-ae search --fast`'s settings
        search_cfg = engine.fast(search_cfg)
    search_cfg = replace(search_cfg, rerank=_int(body, "rerank", search_cfg.rerank))  # a rerank the request gives
    allow = body.get("allow_partial", False)
    if not isinstance(allow, bool):
        raise ValueError(f"request: allow_partial must be true or false, got {allow!r}")
    made_records = []
    for line, rec in enumerate(records, start=1):
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) or not isinstance(rec.get("sequence"), str):
            raise ValueError(f'request: sequence {line}: an object with string "id" and "sequence" expected')
        digit = next((p for p, c in enumerate(rec["sequence"]) if c.isdigit()), None)
        if digit is not None:  # a file may number its sequence lines; a string holding digits is a mistake
            raise ValueError(f"request: record {rec['id']!r}: digit {rec['sequence'][digit]!r} at position "
                             f"{digit + 1}: a sequence is letters only")  # fmt: skip
        given = rec.get("features") or {}
        if not isinstance(given, dict):
            raise ValueError(f"request: record {rec['id']!r}: features must be an object of name -> value")
        made = make_record("request", rec["id"], "", rec["sequence"], line, None, tuple(needed),
                     {k: str(v) for k, v in given.items() if v is not None})  # fmt: skip
        if isinstance(made, InputError):
            raise made
        check_given(needed, dict.fromkeys(given), f"request: record {rec['id']!r}", ': send it in "features"')
        made_records.append(made)
    features = {f.name: [r.features.get(f.name) for r in made_records] for f in needed} if needed else None
    return SearchRequest(made_records, features, search_cfg, allow)


def _int(body: Mapping, name: str, default: int) -> int:
    """A request's search setting: an integer in its range (gene_ae/search/limits.py, as on the CLI)."""
    value, limit = body.get(name, default), SEARCH_LIMITS[name]
    if type(value) is not int or value not in limit:
        raise ValueError(f"request: {name} must be an integer {limit}, got {value!r}")
    return value


def hit_records(queries: Sequence[Record], results: Sequence[list[engine.Hit]], entries: Sequence) -> list[dict]:
    """hits.tsv's columns (gene_ae/search/columns.py) as JSON objects, numbers unrounded."""
    return json_rows([Query(q.id, int(q.tokens.size)) for q in queries], results, entries)


# ------------------------------------------------------------------------------------------------ the app


def _catalogue(d: Path) -> IndexDir:
    """A shard as the ingress needs it: its records, features and sequences, none of its vectors or k-mers."""
    meta = read_meta(d)
    return IndexDir(
        d, meta, None,
        sequences=SequenceStore(d) if meta.sequences else None,
        features=FeatureColumns.load(d) if meta.features else FeatureColumns(),
    )  # fmt: skip


def _catalogue_opener(index: Path) -> Callable[[Path], IndexDir]:
    """Shard 0 opened whole (query and provenance checks), the others as catalogues."""
    return lambda d: IndexDir.open(d) if d == index else _catalogue(d)


def deployment_names(collection: Collection) -> list[str]:
    """A deployment per index shard, named after the shard (its directory; shard 0 is the index directory)."""
    return [FIRST_INDEX_SHARD] + [s.path.name for s in collection.shards[1:]]


def build_app(index: str | Path, load: Loader, cfg: ServeConfig):
    """The Serve application: a deployment per index shard (deployment_names; shard 0 is FIRST_INDEX_SHARD) and the
    ingress bound to them. Only index.json and shards.json are read here."""
    from ray import serve

    index = Path(index).resolve()
    collection = Collection.open(index, opener=lambda d: IndexDir(d, read_meta(d), None))
    options = {
        "num_replicas": cfg.replicas,
        "ray_actor_options": {"num_cpus": cfg.cpus},
        "max_ongoing_requests": cfg.max_ongoing_requests,
    }
    deployment = serve.deployment(IndexShardDeployment)
    names, bound = deployment_names(collection), []
    for name, s, lo, hi in zip(names, collection.shards, collection.offsets[:-1], collection.offsets[1:]):
        removed = (np.flatnonzero(collection.removed[lo:hi])).tolist()
        bound.append(deployment.options(name=name, **options).bind(str(s.path), int(lo), removed))
    ingress = serve.deployment(SearchIngress).options(name="ingress", **options)
    return ingress.bind(str(index), load, names, bound, cfg)


def deploy(index: str | Path, load: Loader, cfg: ServeConfig, host: str, port: int, proxy: str = "HeadOnly") -> str:
    """Start Serve on the Ray cluster this process is connected to (HTTP proxies on host:port, on the head node
    or on every node), deploy the index and wait until every deployment is up; returns the endpoint's URL."""
    from ray import serve

    serve.start(proxy_location=proxy, http_options={"host": host, "port": port})
    serve.run(build_app(index, load, cfg), name=APP_NAME, route_prefix=ROUTE, blocking=False)
    return f"http://{host}:{port}{ROUTE}"


def check_cpus(index: str, cfg: ServeConfig, free: dict, nodes: list[dict]) -> None:
    """Refuse a layout the Ray cluster cannot place: build_app deploys one deployment per shard and the ingress,
    `cfg.replicas` replicas each reserving `cfg.cpus`; Serve would wait for ever for the replicas that do not fit,
    printing nothing."""
    shards = len(read_shards_file(Path(index))[0]) + 1
    deployments = shards + 1
    need, have = deployments * cfg.replicas * cfg.cpus, float(free.get("CPU", 0))
    widest = max((float(n.get("CPU", 0)) for n in nodes), default=have)
    if cfg.cpus > widest:
        raise ValueError(f"--replica-cpus {cfg.cpus:g}: more than any node of the Ray cluster has ({widest:g}); "
                         "lower --replica-cpus")  # fmt: skip
    if need > have + 1e-9:
        fit = math.floor(have / (deployments * cfg.replicas) * 100) / 100
        smaller = f"--replica-cpus to {fit:g} or less, " if fit > 0 else ""
        raise ValueError(
            f"--index {index}: {shards} shard deployment{'s' if shards > 1 else ''} and the ingress, --replicas "
            f"{cfg.replicas} each of --replica-cpus {cfg.cpus:g}, need {need:g} CPUs; the Ray cluster has "
            f"{have:g} free: lower --replicas, {smaller}or add CPUs"
        )
