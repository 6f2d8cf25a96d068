"""Issue 20's probe: are untrained fuzzy spaced seeds a better search vector than hashed k-mer profiles, and do
they add to the learned k-mer bags?

    python benchmarks/seed_probe.py --data SHARDS --model CKPT [--sources val] [N:WIDTH:CARE:NEED ...]

A fuzzy seed is what one conv filter over one-hot DNA computes with a match threshold: N patterns, each caring
about CARE random positions of WIDTH (one base each); at every position the filter scores the bases that match,
ReLU(matches - NEED + 0.5) fires for NEED or more, on both strands, summed over the sequence, divided by the
total (a profile), less the distractors' mean profile, L2-normalised. A copy 30 % diverged keeps an exact
8-mer with p = 0.06 but 6 of 8 positions with p = 0.55: the idea behind learned seeds (PatternHunter, CNN-ED).
Scored as encoder_study.py's vector part scores (the same sources, 4,000 distractors, recall@1 / @100), beside
the checkpoint's bags, the 7-mer profile hashed to 512 values, and bags + seeds (the two unit vectors summed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder_study import collection, study_sources  # noqa: E402

from gene_ae.core.topk import top_k  # noqa: E402
from gene_ae.evaluate.baselines import hashed_profiles  # noqa: E402
from gene_ae.evaluate.metrics import copy_recall  # noqa: E402
from gene_ae.model.checkpoint import load_model  # noqa: E402
from gene_ae.model.encoder import Encoder  # noqa: E402
from shard_tools.alphabet import FIRST_BASE  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--data", required=True, help="training shards (encoder_study.py's)")
p.add_argument("--model", required=True, help="checkpoint whose bags are compared")
p.add_argument("--sources", choices=("val", "dog", "16s", "windows"), default="val")
p.add_argument("variants", nargs="*", default=["512:12:8:6", "512:8:8:6"], help="N:WIDTH:CARE:NEED")
args = p.parse_args()
torch.set_num_threads(2)
sources = study_sources(args.data, args.sources)
genes = collection(sources, args.data, 4000)
print(f"{args.sources}: {len(sources)} sources, {len(genes)} records", flush=True)
print("| vector | recall@1 10 / 20 / 30 % | recall@100 10 / 20 / 30 % | s |\n|---|---|---|---|", flush=True)


def seed_filters(n: int, width: int, care: int, seed: int) -> torch.Tensor:
    """n patterns over `width` positions, `care` of them cared about: +1 for the pattern's base there."""
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(n, 4, width)
    for i in range(n):
        pos = torch.randperm(width, generator=g)[:care]
        base = torch.randint(0, 4, (care,), generator=g)
        w[i, base, pos] = 1.0
    return w


def fuzzy(seqs, w: torch.Tensor, need: float) -> np.ndarray:
    rc = w.flip(-1).flip(1)  # reverse complement: positions reversed, A<->T and C<->G (channels ACGT reversed)
    both = torch.cat([w, rc])
    out = []
    with torch.no_grad():
        for s in seqs:
            t = torch.as_tensor(s.astype(np.int64)) - FIRST_BASE
            x = F.one_hot(t.clamp(0, 3), 4).float() * ((t >= 0) & (t < 4)).float()[:, None]
            y = F.relu(F.conv1d(x.T[None], both) - (need - 0.5))[0].sum(-1)
            v = y[: w.shape[0]] + y[w.shape[0] :]
            out.append(v)
    v = torch.stack(out)
    v = v / v.sum(-1, keepdim=True).clamp(min=1)  # a profile: composition, not length
    return v


def score(name, embed):
    t = time.time()
    cache = {}

    def e(seqs):
        key = id(seqs)  # the collection is embedded once; queries each time
        if key not in cache:
            cache[key] = embed(seqs)
        return cache[key]

    base = e(genes)
    r = copy_recall(lambda q, k: top_k(embed(q) @ base.T, k)[0], genes, np.arange(len(sources)), (0.1, 0.2, 0.3), 0,
                    (1, 100))  # fmt: skip
    print(
        f"| {name} | {' / '.join(f'{x:.3f}' for x in r['recall@1'])} | "
        f"{' / '.join(f'{x:.3f}' for x in r['recall@100'])} | {time.time() - t:.0f} s |",
        flush=True,
    )


model, cfg = load_model(args.model)
model.eval()
enc = Encoder(model, torch.device("cpu"))


def bags(seqs):
    with torch.no_grad():
        return F.normalize(model.combine(enc.branch_sums(seqs)), dim=-1).numpy()


variants = [a.split(":") for a in args.variants]
score("bags", bags)
score("7-mer hashed 512", lambda s: hashed_profiles(s, 7, 512))
for n, width, care, need in variants:
    w = seed_filters(int(n), int(width), int(care), 0)
    mean = fuzzy(genes[len(sources) :], w, float(need)).mean(0, keepdim=True)  # the distractors' mean profile

    def fz(s, w=w, need=float(need), mean=mean):
        return F.normalize(fuzzy(s, w, need) - mean, dim=-1).numpy()

    score(f"fuzzy {n} w{width} care{care} need{need}", fz)

    def combo(s, fz=fz):
        return F.normalize(torch.as_tensor(bags(s)) + torch.as_tensor(fz(s)), dim=-1).numpy()

    score(f"bags + fuzzy {n} w{width} care{care} need{need}", combo)
