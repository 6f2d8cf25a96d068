"""The training losses: reconstruction over real bases, KL of a variational latent, InfoNCE with siblings."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shard_tools.alphabet import FIRST_BASE


def reconstruction_counts(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cross-entropy in nats summed, correct bases, real bases) over real bases only: padding and
    specials never count. The one reconstruction metric: training's loss and evaluation both use it."""
    valid = mask & (tokens >= FIRST_BASE)
    target = tokens.long().masked_fill(~valid, -100)
    flat = logits.float().reshape(-1, logits.shape[-1])
    nats = F.cross_entropy(flat, target.reshape(-1), ignore_index=-100, reduction="sum")
    correct = ((logits.argmax(-1) == tokens) & valid).sum()
    return nats, correct, valid.sum()


def reconstruction_loss(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy (nats) and accuracy over real bases only."""
    nats, correct, count = reconstruction_counts(logits, tokens, mask)
    count = count.clamp(min=1)
    return nats / count, correct / count


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)), summed over dims and averaged over the batch; each dim's batch-mean KL is
    clamped below at free_bits (nats) so the encoder is not pushed to collapse unused dims to the prior."""
    mu, logvar = mu.float(), logvar.float()
    per_dim = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)
    return per_dim.clamp(min=free_bits).sum()


def contrastive_loss(
    anchor: torch.Tensor,
    view: torch.Tensor,
    temperature: float = 0.1,
    sibling: torch.Tensor | None = None,
    negatives: torch.Tensor | None = None,
    view_negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE between windows and their views, with each window's sibling as a hard negative.

    A sibling is the window mutated a little (a near-identical relative, as genomes of one clade are).
    The view was mutated from the window, not from the sibling, so the window must rank above every
    sibling for the view: this trains the vector to keep the small differences that tell relatives
    apart, where views alone train only invariance ("all of these are the same"). `negatives` [Q, D]
    are extra windows' keys for the views; `view_negatives` extra views' keys for the windows (None: `negatives`
    for both), so that each key stands beside keys of its own kind (a coded model's windows are coded, its views
    float, as search scores a float query against the stored codes).
    """
    a, v = F.normalize(anchor.float(), dim=-1), F.normalize(view.float(), dim=-1)

    def extra(keys: torch.Tensor | None) -> list[torch.Tensor]:
        return [F.normalize(keys.float(), dim=-1)] if keys is not None and keys.numel() else []

    hard = [F.normalize(sibling.float(), dim=-1)] if sibling is not None else []
    labels = torch.arange(a.shape[0], device=a.device)
    to_windows = F.cross_entropy(v @ torch.cat([a, *hard, *extra(negatives)]).T / temperature, labels)
    to_views = F.cross_entropy(
        a @ torch.cat([v, *extra(negatives if view_negatives is None else view_negatives)]).T / temperature, labels
    )
    return 0.5 * (to_windows + to_views)


class NegativeQueue:
    """The newest `size` windows' and `size` views' search vectors of earlier batches (detached, apart), as extra
    InfoNCE negatives: the windows' beside the windows for the views, the views' beside the views for the windows
    (a coded model's windows are coded and its views float: one queue of both would mix the two)."""

    def __init__(self, size: int):
        self.size = size
        self.windows: torch.Tensor | None = None
        self.views: torch.Tensor | None = None

    def get(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(windows, views), newest first, normalised; None before the first push (or with size 0)."""
        return self.windows, self.views

    def push(self, windows: torch.Tensor, views: torch.Tensor) -> None:
        if self.size <= 0:
            return
        self.windows = self._kept(windows, self.windows)
        self.views = self._kept(views, self.views)

    def _kept(self, vectors: torch.Tensor, held: torch.Tensor | None) -> torch.Tensor:
        new = F.normalize(vectors.detach().float(), dim=-1)
        return torch.cat([new, held])[: self.size] if held is not None else new[: self.size]


def supcon_loss(vectors: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) over a batch: for each row with a label (> 0), the
    other rows with the same label are its positives and every other row a negative. Label 0 (unknown or
    missing) is no anchor and no positive. 0 when no row has a positive."""
    z = F.normalize(vectors.float(), dim=-1)
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    positive = (labels[:, None] == labels[None, :]) & ~eye & (labels[:, None] > 0)
    anchors = positive.any(1)
    if not anchors.any():
        return sim.new_zeros(())
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    per_anchor = log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1).clamp(min=1)
    return -per_anchor[anchors].mean()
