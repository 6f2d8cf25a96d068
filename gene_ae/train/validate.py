"""Validation on the training data's own val split: what `gene-ae eval` measures, so defaults are chosen
without the evaluation sets."""

from __future__ import annotations

import math

import numpy as np
import torch

from gene_ae.config import Config
from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.layers import int_code
from gene_ae.train.step import LN2, WorkerState

VAL_DIVERGENCES = (0.1, 0.2, 0.3)


@torch.no_grad()
def validation_metrics(model: GeneAE, cfg: Config, records: list[np.ndarray], device: torch.device) -> dict[str, float]:
    """Held-out metrics from the val split only, so defaults can be chosen without touching eval data.

    Reconstruction (loss, bits/base, accuracy) on each record's first window; retrieval as `gene-ae
    eval` measures it: whole records embedded by the Encoder's tiling, recall@1 of mutated copies
    at 10/20/30 % divergence against the originals, and their mean (the promotion metric).
    """
    from gene_ae.evaluate.metrics import mutation_recall
    from gene_ae.model.encoder import Encoder

    if not records:
        return {}
    model.eval()
    encoder = Encoder(model, device)
    rec = encoder.reconstruct_windows([r[: cfg.model.window] for r in records])
    nats = rec.nats / max(rec.bases, 1)
    metrics = {"val_loss": nats, "val_bits_per_base": nats / LN2, "val_accuracy": rec.correct / max(rec.bases, 1)}

    # A model whose vector takes features is scored on the sequence alone (every feature missing): the val
    # records' features are not carried here, and mutated copies would share them anyway.
    def embed(seqs):
        return encoder.embed_tokens(seqs, features={name: [None] * len(seqs) for name in encoder.required_features})

    bits = cfg.model.vector_bits if not cfg.model.code_views else 0  # records coded, queries float, as searched

    def stored(vectors: np.ndarray) -> np.ndarray:
        return int_code(torch.from_numpy(vectors), bits).numpy()

    coded = stored if bits else None
    recalls = mutation_recall(embed, records, VAL_DIVERGENCES, cfg.train.seed, stored=coded)["recall@1"]
    for d, r in zip(VAL_DIVERGENCES, recalls):
        metrics[f"val_recall_at_1_d{round(d * 100)}"] = r
    metrics["val_recall_at_1"] = float(np.mean(recalls))
    model.train()
    return metrics


def run_validation(state: WorkerState, cfg: Config, val: list[np.ndarray], device, logger) -> dict[str, float]:
    vm = validation_metrics(getattr(state.model, "module", state.model), cfg, val, device)
    if vm:
        step, per_epoch = state.step, cfg.train.steps_per_epoch
        logger.log({**vm, "epoch": step // per_epoch}, step)
        print(
            f"[gene-ae] epoch {math.ceil(step / per_epoch)} val bits/base "
            f"{vm['val_bits_per_base']:.3f} acc {vm['val_accuracy']:.3f} "
            f"recall@1 10/20/30% {vm['val_recall_at_1_d10']:.3f}/{vm['val_recall_at_1_d20']:.3f}/"
            f"{vm['val_recall_at_1_d30']:.3f}",
            flush=True,
        )
    return vm
