"""One optimisation step of a rank: the loss of a batch, the schedule, the state a checkpoint restores."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch

from gene_ae.config import Config
from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.losses import NegativeQueue, contrastive_loss, kl_loss, reconstruction_loss, supcon_loss
from shard_tools.alphabet import PAD

LN2 = math.log(2)


def lr_lambda(cfg: Config):
    t = cfg.train

    def f(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def batch_loss(
    model, batch: dict, cfg: Config, step: int, device: torch.device, queue: NegativeQueue | None = None
) -> tuple[torch.Tensor, dict]:
    """Reconstruction of the windows (masked to real bases) + InfoNCE between windows and views, with
    siblings as hard negatives (+ KL) (+ for each `signal` feature, a supervised-contrastive term over the
    windows and views: those of records sharing its value are positives; model/features.py).

    With a queue, earlier batches' vectors are extra negatives, and this batch's join the queue."""

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(batch[name]).astype(np.int64)).to(device)

    x = tensor("tokens")
    mask = x != PAD
    # Views and siblings only need the search vector: without the trunk path that is the k-mer bags
    # alone, so they cost little beside the autoencoder's pass over the windows.
    specs = cfg.model.features
    signals = [(i, f) for i, f in enumerate(specs) if f.use == "signal"]
    contrastive = cfg.train.contrastive_weight > 0 or bool(signals)  # both compare windows with their views
    names = ["view"] + (["sibling"] if "sibling" in batch else [])
    others = torch.cat([tensor(name) for name in names]) if contrastive else None
    codes = torch.from_numpy(np.asarray(batch["features"], np.float32)).to(device) if specs else None
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = model(x, mask, others, features=codes, queries=len(x))  # the views are the queries
        rec, acc = reconstruction_loss(out["logits"].float(), x, mask)
        loss = rec
        metrics = {"loss_rec": rec.item(), "bits_per_base": rec.item() / LN2, "accuracy": acc.item()}
        if contrastive:
            vecs = out["others"].float().split(len(x))
            vec = out["vector"].float()
        for col, f in signals:
            labels = codes[:, col].long()
            sup = supcon_loss(torch.cat([vec, vecs[0]]), torch.cat([labels, labels]), cfg.train.temperature)
            loss = loss + f.weight * sup
            metrics[f"loss_supcon_{f.name}"] = sup.item()
        if cfg.train.contrastive_weight > 0:
            sibling = vecs[1] if len(vecs) > 1 else None
            windows, views = queue.get() if queue is not None else (None, None)
            nce = contrastive_loss(vec, vecs[0], cfg.train.temperature, sibling, windows, views)
            if queue is not None:
                queue.push(vec, vecs[0])
            loss = loss + cfg.train.contrastive_weight * nce
            metrics["loss_nce"] = nce.item()
        if out.get("vq_loss") is not None:  # the product code's centroids and commitment (model.vector_pq)
            loss = loss + out["vq_loss"]
            metrics["loss_vq"] = out["vq_loss"].item()
        if out["logvar"] is not None:
            kl = kl_loss(out["code"].float(), out["logvar"].float(), cfg.train.free_bits)
            loss = loss + cfg.train.kl_weight * min(1.0, step / max(1, cfg.train.kl_anneal_steps)) * kl
            metrics["loss_kl"] = kl.item()
    metrics["loss"] = loss.item()
    metrics["bases"] = int(mask.sum())
    return loss, metrics


@dataclass
class WorkerState:
    """What one rank carries through the loop, and what a checkpoint saves and restores."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    queue: NegativeQueue
    step: int = 0
    restored: bool = False

    def trainer_state(self) -> dict:
        return {
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "step": self.step,
            "torch_rng": torch.get_rng_state(),
            "py_rng": random.getstate(),
        }


def new_state(model: torch.nn.Module, cfg: Config) -> WorkerState:
    """A fresh optimiser, schedule and negative queue for a model already on its device: what every rank
    starts from, and what a one-process study trains with (benchmarks/study.py)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    return WorkerState(model, opt, sched, NegativeQueue(cfg.train.queue_size))


def setup_worker(cfg: Config, device: torch.device) -> WorkerState:
    """Model, optimiser and schedule for this rank, restored from Ray's newest checkpoint if there is one."""
    import ray.train
    import ray.train.torch

    from gene_ae.model import checkpoint

    model = GeneAE(cfg.model)
    saved = None
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            module, _ = checkpoint.load_model(d)
            model.load_state_dict(module.state_dict())
            saved = checkpoint.load_trainer_state(d)
    state = new_state(ray.train.torch.prepare_model(model), cfg)
    state.restored = restored is not None
    if saved is not None:
        state.opt.load_state_dict(saved["optimizer"])
        state.sched.load_state_dict(saved["scheduler"])
        state.step = saved["step"]
        torch.set_rng_state(saved["torch_rng"])
        random.setstate(saved["py_rng"])
    return state


def train_step(state: WorkerState, batch: dict, cfg: Config, device: torch.device) -> dict[str, float]:
    loss, metrics = batch_loss(state.model, batch, cfg, state.step, device, state.queue)
    optimise(state, loss, cfg)
    return metrics


def optimise(state: WorkerState, loss: torch.Tensor, cfg: Config) -> None:
    """One optimiser step on `loss` (gradients clipped, the schedule advanced): train_step's, and a study's that
    adds a term of its own to batch_loss (benchmarks/study.py, `extra`)."""
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.train.grad_clip)
    state.opt.step()
    state.sched.step()
    state.step += 1
