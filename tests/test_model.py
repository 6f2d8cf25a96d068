"""Unit tests for the autoencoder, its losses and long-sequence embedding, on tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gene_ae.model.autoencoder import GeneAE, count_parameters
from gene_ae.model.bags import kmer_ids
from gene_ae.model.config import POOLINGS, ModelConfig
from gene_ae.model.encoder import Encoder
from gene_ae.model.layers import code_of_ids, latent_ids
from gene_ae.model.losses import NegativeQueue, contrastive_loss, kl_loss, reconstruction_loss
from shard_tools import alphabet
from shard_tools.inputs import ReaderConfig, read_records


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{"channels": 32, "vector_dim": 64, "window": 64, "downsample": 4, **overrides})


def random_batch(batch: int, length: int, lengths: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(alphabet.A, alphabet.T + 1, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.bool)
    for i, n in enumerate(lengths or []):
        mask[i, n:] = False
        tokens[i, n:] = alphabet.PAD
    return tokens, mask


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("variational", [False, True])
def test_forward_shapes(pooling: str, variational: bool) -> None:
    cfg = tiny(pooling=pooling, variational=variational, vector_trunk=True, latent_levels=0 if variational else 4)
    model = GeneAE(cfg)
    tokens, mask = random_batch(3, 50, [50, 31, 7])
    out = model(tokens, mask)
    assert out["logits"].shape == (3, 50, cfg.vocab_size)
    assert out["vector"].shape == (3, cfg.vector_dim)
    assert out["code"].shape == out["z"].shape == (3, math.ceil(50 / cfg.downsample), cfg.latent_channels)
    assert (out["logvar"] is not None) == variational
    if variational:
        assert out["logvar"].shape == out["code"].shape
        assert not torch.equal(out["z"], out["code"])  # sampled in training mode
        model.eval()
        out = model(tokens, mask)
    assert torch.equal(out["z"], out["code"])


@pytest.mark.parametrize("downsample", [1, 2, 8, 64])
def test_any_length_and_downsample(downsample: int) -> None:
    model = GeneAE(tiny(downsample=downsample, window=128))
    for length in (1, 13, 128):
        tokens, mask = random_batch(2, length)
        assert model(tokens, mask)["logits"].shape == (2, length, 8)
    enc = model.encode(*random_batch(2, 1000))  # the encoder is not limited to the decoder's window
    assert enc.vector.shape == (2, 64) and enc.code.shape == (2, math.ceil(1000 / downsample), 8)


def test_config_validation() -> None:
    for bad in ({"downsample": 3}, {"downsample": 128}, {"window": 60, "downsample": 8}, {"pooling": "sum"}):
        with pytest.raises(ValueError):
            ModelConfig(**bad)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_encode_is_padding_invariant(pooling: str) -> None:
    model = GeneAE(tiny(pooling=pooling, lstm_layers=2, dropout=0.1, vector_trunk=True)).eval()
    tokens, mask = random_batch(3, 50, [50, 29, 3])
    enc = model.encode(tokens, mask)
    mu, code = enc.vector, enc.code
    padded_tokens = torch.cat([tokens, torch.full((3, 37), alphabet.PAD)], 1)
    padded_mask = torch.cat([mask, torch.zeros(3, 37, dtype=torch.bool)], 1)
    garbage_tokens = padded_tokens.masked_fill(~padded_mask, alphabet.G)  # masked-out content must not leak
    for t in (padded_tokens, garbage_tokens):
        padded = model.encode(t, padded_mask)
        assert torch.allclose(padded.vector, mu, atol=1e-5)
        assert torch.allclose(padded.code[:, : code.shape[1]], code, atol=1e-5)
        assert padded.code[:, code.shape[1] :].abs().max() == 0  # padding has no code
    alone = model.encode(tokens[1:2, :29], mask[1:2, :29])
    assert torch.allclose(alone.vector[0], mu[1], atol=1e-5)


def test_decoder_depends_only_on_z() -> None:
    model = GeneAE(tiny()).eval()
    z = torch.randn(2, 64 // 4, 8)  # a full window's code: window / downsample positions x latent_channels
    first = model.decode(z, 64)
    assert torch.equal(first, model.decode(z, 64))
    assert torch.equal(model.decode(z, 10), first[:, :10])
    assert (model.decode(z + 0.5 * torch.randn_like(z), 64) - first).abs().max() > 1e-3
    tokens, mask = random_batch(2, 40)
    out = model(tokens, mask)
    assert torch.equal(out["logits"], model.decode(out["code"], 40))
    with pytest.raises(ValueError):
        model.decode(z, 65)


def test_reconstruction_loss_ignores_padding_and_specials() -> None:
    tokens, mask = random_batch(2, 12, [12, 6])
    tokens[0, 0], tokens[0, -1] = alphabet.BOS, alphabet.EOS
    logits = torch.randn(2, 12, 8)
    loss, acc = reconstruction_loss(logits, tokens, mask)
    ignored = ~mask | (tokens < alphabet.FIRST_BASE)
    changed = torch.where(ignored.unsqueeze(-1), 100 * torch.randn(2, 12, 8), logits)
    loss2, acc2 = reconstruction_loss(changed, tokens, mask)
    assert torch.allclose(loss, loss2) and torch.equal(acc, acc2)

    perfect = 20 * torch.nn.functional.one_hot(tokens, 8).float()
    loss, acc = reconstruction_loss(perfect, tokens, mask)
    assert loss < 1e-6 and acc == 1.0
    loss, acc = reconstruction_loss(torch.zeros(2, 12, 8), tokens, mask)
    assert math.isclose(loss.item(), math.log(8), rel_tol=1e-6)


def test_kl_loss() -> None:
    zeros = torch.zeros(4, 16)
    assert kl_loss(zeros, zeros).item() == 0.0
    assert math.isclose(kl_loss(zeros, zeros, free_bits=0.25).item(), 16 * 0.25)
    mu = torch.full((4, 16), 2.0)
    assert math.isclose(kl_loss(mu, zeros).item(), 16 * 0.5 * 4.0, rel_tol=1e-6)


def test_infonce_prefers_aligned_pairs() -> None:
    z1 = torch.randn(16, 32)
    z2 = z1 + 0.1 * torch.randn(16, 32)
    aligned = contrastive_loss(z1, z2)
    shuffled = contrastive_loss(z1, z2[torch.randperm(16)])
    assert aligned < shuffled
    assert aligned < 0.1 < math.log(16) < shuffled + 1.0
    assert torch.allclose(contrastive_loss(z1, z2), contrastive_loss(z2, z1))


def test_embed_is_unit_and_deterministic() -> None:
    model = GeneAE(tiny(variational=True, latent_levels=0, dropout=0.2)).train()
    tokens, mask = random_batch(3, 40, [40, 20, 5])
    e1, e2 = model.embed(tokens, mask), model.embed(tokens, mask)
    assert model.training  # mode restored
    assert torch.equal(e1, e2)
    assert torch.allclose(e1.norm(dim=-1), torch.ones(3))


def _encoder(cfg: ModelConfig) -> Encoder:
    return Encoder(GeneAE(cfg), device="cpu")


def test_long_sequences_add_up_their_pieces_parts() -> None:
    """A long sequence's vector is its pieces' per-path sums added, then combined: with the trunk in the
    vector the pieces are windows; with k-mer bags alone the whole sequence is one piece."""
    seq = np.random.default_rng(0).integers(alphabet.A, alphabet.T + 1, 2 * 64 + 10, dtype=np.uint8)
    one = torch.ones(1, seq.size, dtype=torch.bool)

    trunk = _encoder(tiny(vector_trunk=True))
    vec = trunk.embed_tokens([seq], batch_size=2)[0]
    windows = torch.from_numpy(np.stack([seq[0:64], seq[64:128], seq[-64:]]).astype(np.int64))
    parts = trunk.model.encode(windows, torch.ones_like(windows, dtype=torch.bool)).sums
    expected = torch.nn.functional.normalize(trunk.model.combine(parts.sum(0)), dim=0).detach().numpy()
    assert vec.dtype == np.float32 and np.allclose(vec, expected, atol=1e-5)

    bags = _encoder(tiny())
    whole = torch.from_numpy(seq.astype(np.int64))[None]
    expected = bags.model.embed(whole, one)[0].detach().numpy()
    assert np.allclose(bags.embed_tokens([seq])[0], expected, atol=1e-5)
    assert bags.model.to_vector is None  # no trunk path: its parameters do not exist

    # Cut into 16 kb pieces that run k_max - 1 bases on: the longest k-mers are each counted once, so the
    # vector is that of one pass (the 5-mer path counts 2 k-mers twice per cut).
    long = np.random.default_rng(1).integers(alphabet.A, alphabet.T + 1, 40_000, dtype=np.uint8)
    whole = torch.from_numpy(long.astype(np.int64))[None]
    for sizes, tol in (((7,), 1e-5), ((5, 7), 1e-3)):
        enc = _encoder(tiny(kmer_sizes=sizes))
        expected = enc.model.embed(whole, torch.ones_like(whole, dtype=torch.bool))[0].detach().numpy()
        assert np.abs(enc.embed_tokens([long])[0] - expected).max() < tol, sizes

    short = seq[:30]  # shorter than a window: encoded whole
    t = torch.from_numpy(short.astype(np.int64))[None]
    expected = trunk.model.embed(t, torch.ones_like(t, dtype=torch.bool))[0].detach().numpy()
    assert np.allclose(trunk.embed_tokens([short])[0], expected, atol=1e-5)
    with pytest.raises(ValueError):
        trunk.embed_tokens([seq[:0]])


def test_path_normalisation_keeps_each_k_weighted_at_any_length() -> None:
    """Each path is normalised after pooling, so on a long sequence the 7-mer path weighs as much as the
    5-mer one (a mean of normalised windows let the smoother short-k path dominate)."""
    model = GeneAE(tiny(kmer_sizes=(5, 7))).eval()
    seq = torch.randint(alphabet.A, alphabet.T + 1, (1, 20_000))
    with torch.no_grad():
        parts = model.branch_sums(seq, torch.ones_like(seq, dtype=torch.bool))[0]
        vec = model.combine(parts)
        shares = [float(torch.nn.functional.normalize(p, dim=0) @ vec) for p in parts]
    assert abs(shares[0] - shares[1]) < 0.1 * max(shares), shares


def test_embed_200kb_with_default_model() -> None:
    cfg = ModelConfig()
    encoder = _encoder(cfg)
    seq = np.random.default_rng(1).integers(alphabet.A, alphabet.T + 1, 200_000, dtype=np.uint8)
    vec = encoder.embed_tokens([seq])[0]
    assert vec.shape == (cfg.vector_dim,) and vec.dtype == np.float32
    assert abs(np.linalg.norm(vec) - 1.0) < 1e-5


def test_default_model_size() -> None:
    n = count_parameters(GeneAE(ModelConfig()))
    assert 1_000_000 < n < 12_000_000  # 10.3 M: the canonical 7-mer bag alone holds 16,385 x 512


def test_bf16_autocast_forward_backward() -> None:
    model = GeneAE(tiny(pooling="attention", variational=True, latent_levels=0, vector_trunk=True))
    tokens, mask = random_batch(2, 64, [64, 33])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(tokens, mask)
        loss = reconstruction_loss(out["logits"], tokens, mask)[0] + kl_loss(out["code"], out["logvar"])
        loss = loss + contrastive_loss(out["vector"], out["vector"].flip(0))  # the search vector's own loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_tiny_model_overfits_real_sequences(data_dir) -> None:
    """8 real genes reconstructed at >= 0.99 per base from the latent alone (no teacher forcing). (The one
    overfit test: it was also in test_train.py, with a random-sequence twin here.) One torch thread (the
    autouse fixture): two threads on 2 shared cores made it 10x slower."""
    recs = read_records(data_dir / "genefam" / "chimp_sample.tsv.gz", ReaderConfig(label_column="class"))
    seqs = [r.tokens[:128] for r, _ in zip(recs, range(8))]
    x = torch.from_numpy(np.stack(seqs).astype(np.int64))
    mask = torch.ones_like(x, dtype=torch.bool)
    model = GeneAE(ModelConfig(channels=64, embed_dim=32, lstm_hidden=64, vector_dim=64, window=128, downsample=4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    acc = torch.tensor(0.0)
    for _ in range(400):
        loss, acc = reconstruction_loss(model(x, mask)["logits"], x, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if acc.item() >= 0.995:
            break
    model.eval()
    with torch.no_grad():
        _, acc = reconstruction_loss(model(x, mask)["logits"], x, mask)
    assert acc.item() >= 0.99


@pytest.mark.parametrize(
    "kmer_sizes,trunk,conv,seeds", [((), True, False, 0), ((3, 4, 5), False, False, 0), ((3, 4, 5), True, False, 0),
                                    ((3, 4, 5), False, True, 0), ((), False, True, 0), ((3,), False, True, 16),
                                    ((), False, False, 16)],
)  # fmt: skip
def test_every_parameter_gets_a_gradient(kmer_sizes, trunk, conv, seeds) -> None:
    """DDP fails on parameters that never receive a gradient: an unused trunk projection would, without
    the trunk path in the vector (the conv branch's projection is in the graph from the start, its
    gradient 0 until its weight moves)."""
    model = GeneAE(tiny(kmer_sizes=kmer_sizes, vector_trunk=trunk, vector_conv=conv, vector_seeds=seeds,
                        latent_levels=4))  # fmt: skip
    x, mask = random_batch(3, 64)
    out = model(x, mask, x.flip(0))
    loss = reconstruction_loss(out["logits"], x, mask)[0] + contrastive_loss(out["vector"], out["others"])
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.numel() == 0]
    assert missing == [], missing


def test_infonce_queue_negatives_make_the_task_harder_and_the_queue_keeps_the_newest() -> None:
    torch.manual_seed(0)
    z1 = torch.randn(8, 32)
    z2 = z1 + 0.3 * torch.randn(8, 32)
    assert torch.allclose(contrastive_loss(z1, z2, negatives=torch.zeros(0, 32)), contrastive_loss(z1, z2))
    hard = z1 + 0.3 * torch.randn(8, 32)  # negatives as close to z1 as its positives
    assert contrastive_loss(z1, z2, negatives=hard) > contrastive_loss(z1, z2) + 0.2
    queue = NegativeQueue(5)
    assert queue.get() == (None, None)
    queue.push(torch.ones(3, 4), -torch.ones(3, 4))
    queue.push(2 * torch.eye(4), -2 * torch.eye(4))
    windows, views = queue.get()
    assert windows.shape == views.shape == (5, 4)
    assert torch.allclose(windows[:4], torch.eye(4))  # newest first, normalised
    assert torch.allclose(windows[4], torch.full((4,), 0.5))
    assert torch.allclose(views, -windows)  # each side its own queue


def test_infonce_sets_each_queued_side_beside_the_keys_of_its_kind() -> None:
    """The windows' negatives are keys for the views, the views' for the windows (a coded model's windows are
    coded, its views float): the loss is the two cross-entropies over exactly those keys."""
    import torch.nn.functional as F

    torch.manual_seed(1)
    z1, z2, wn, vn = (torch.randn(n, 16) for n in (6, 6, 4, 3))
    a, v, w, u = (F.normalize(x, dim=-1) for x in (z1, z2, wn, vn))
    labels = torch.arange(6)
    to_windows = F.cross_entropy(v @ torch.cat([a, w]).T / 0.1, labels)
    to_views = F.cross_entropy(a @ torch.cat([v, u]).T / 0.1, labels)
    got = contrastive_loss(z1, z2, 0.1, negatives=wn, view_negatives=vn)
    assert torch.allclose(got, 0.5 * (to_windows + to_views))
    assert not torch.allclose(got, contrastive_loss(z1, z2, 0.1, negatives=wn))  # the views' side counted


def test_frozen_kmers_stay_at_initialisation_and_hashed_ids_stay_in_range() -> None:
    model = GeneAE(tiny(kmer_sizes=(3, 9), kmer_buckets=1000, freeze_kmers=True))
    assert [b.weight.shape[0] for b in model.kmer_bags] == [65, 1001]
    assert not any(b.weight.requires_grad for b in model.kmer_bags)
    tokens, mask = random_batch(4, 300)
    ids = kmer_ids(tokens, 9, True, 1000)
    assert ids.min() >= 0 and ids.max() < 1000 and ids.unique().numel() > 200


# ---- issue 20: the conv branch of the search vector and the quantised latent


def test_conv_branch_starts_as_the_bags_vector_and_learns_its_weight() -> None:
    """Its weight starts at 0: the vector equals the bags' (same weights) and only the weight gets a
    gradient at first; a weight of 0 given to combine is the same checkpoint's bags alone."""
    with_conv = GeneAE(tiny(vector_conv=True))
    bags = GeneAE(tiny())
    bags.load_state_dict({k: v for k, v in with_conv.state_dict().items() if k in bags.state_dict()})
    x, mask = random_batch(3, 64)
    assert torch.allclose(with_conv.search_vector(x, mask), bags.search_vector(x, mask), atol=1e-6)
    out = with_conv(x, mask, others=x.clone())
    out["vector"].pow(2).sum().backward()
    assert with_conv.conv_weight.grad is not None and float(with_conv.conv_weight.grad.abs()) > 0
    assert float(with_conv.conv_to_vector.weight.grad.abs().sum()) == 0.0  # scaled by the weight, 0 so far
    with torch.no_grad():
        with_conv.conv_weight.fill_(0.7)
        sums = with_conv.branch_sums(x, mask)
        assert sums.shape == (3, 3, 64)  # 5-mer bag, 7-mer bag, conv branch
        assert not torch.allclose(with_conv.combine(sums), bags.search_vector(x, mask))
        assert torch.allclose(with_conv.combine(sums, 0.0), bags.search_vector(x, mask), atol=1e-6)


def test_conv_branch_reads_the_convs_not_the_lstm() -> None:
    """The vector comes out of the encoder's trunk: changing a conv weight moves it, the LSTM does not
    (embedding skips it), and the decoder's latent comes from the same conv features."""
    model = GeneAE(tiny(vector_conv=True)).eval()
    with torch.no_grad():
        model.conv_weight.fill_(1.0)
    x, mask = random_batch(2, 200)
    before = model.embed(x, mask)
    with torch.no_grad():
        for p in model.enc_lstm.parameters():
            p.add_(torch.randn_like(p))
    assert torch.equal(model.embed(x, mask), before)
    with torch.no_grad():
        model.down[0].conv.weight.add_(torch.randn_like(model.down[0].conv.weight))
    assert (model.embed(x, mask) - before).abs().max() > 1e-3
    enc = model.encode(x, mask)
    assert torch.allclose(model.combine(enc.sums), model.search_vector(x, mask), atol=1e-5)


def test_conv_branch_embeds_long_sequences_as_about_one_pass() -> None:
    """Long sequences are cut into pieces like the bags' (the convs are local): within a small tolerance of
    one pass over the whole sequence (the positions near each cut differ)."""
    enc = _encoder(tiny(vector_conv=True))
    with torch.no_grad():
        enc.model.conv_weight.fill_(1.0)
    seq = np.random.default_rng(1).integers(alphabet.A, alphabet.T + 1, 40_000, dtype=np.uint8)
    whole = torch.from_numpy(seq.astype(np.int64))[None]
    expected = enc.model.embed(whole, torch.ones_like(whole, dtype=torch.bool))[0].detach().numpy()
    got = enc.embed_tokens([seq])[0]
    assert float(got @ expected) > 0.999


@pytest.mark.parametrize(("channels", "levels", "bits"), [(2, 4, 1.0), (4, 4, 2.0), (3, 8, 2.25)])
def test_quantised_latent_is_stored_at_its_rate(channels: int, levels: int, bits: float) -> None:
    """Every latent value is one of `levels` values, the integer levels give the code back exactly (what
    the decoder reads is what is stored), and the rate is channels x log2(levels) / downsample."""
    cfg = tiny(latent_channels=channels, latent_levels=levels)
    assert cfg.latent_bits_per_base == pytest.approx(bits)
    model = GeneAE(cfg)
    x, mask = random_batch(2, 64)
    out = model(x, mask)
    code = out["code"]
    ids = latent_ids(code, levels)
    assert int(ids.max()) < levels and torch.allclose(code_of_ids(ids, levels), code, atol=1e-6)
    assert torch.equal(model.decode(code_of_ids(ids, levels), 64), model.decode(code, 64))
    out["logits"].sum().backward()  # straight-through: the encoder still learns
    assert float(model.to_code.weight.grad.abs().sum()) > 0


def test_float_latent_rate_and_config_checks() -> None:
    assert (
        tiny(latent_channels=8, latent_levels=0).latent_bits_per_base == 8 * 32 / 4
    )  # float32 values, 4 bases a position
    with pytest.raises(ValueError, match="latent_levels"):
        tiny(latent_levels=1)
    with pytest.raises(ValueError, match="model.variational: .* model.latent_levels=0"):
        tiny(latent_levels=4, variational=True)
    with pytest.raises(ValueError, match="latent_levels"):
        tiny(latent_levels=257)
    tiny(kmer_sizes=(), vector_conv=True)  # the conv branch alone is a vector
    tiny(kmer_sizes=(), vector_seeds=8)  # so are the seeds
    with pytest.raises(ValueError, match="model.seed_care: at most model.seed_width"):
        tiny(vector_seeds=8, seed_width=6, seed_care=7)
    with pytest.raises(ValueError, match="model.seed_need: at most model.seed_care"):
        tiny(vector_seeds=8, seed_care=5, seed_need=6)


# ---- issue 20: the seed branch (learned fuzzy spaced seeds, a stride-1 conv over the bases)


def test_seed_branch_is_the_conv_it_stands_for_and_fires_on_its_seed() -> None:
    """The embedding-bag form equals a plain conv1d over one-hot bases (both strands, centred, summed over
    the spans inside each sequence); an untrained filter fires on its seed with `need` of `care` bases right."""
    from gene_ae.model.seeds import SeedBranch, expected_firing

    branch = SeedBranch(24, 10, 6, 4, 32)
    with torch.no_grad():
        branch.weight.add_(0.1 * torch.randn_like(branch.weight))
        branch.bias.add_(0.1 * torch.randn_like(branch.bias))
    x, _ = random_batch(4, 90, [90, 50, 12, 5])
    x[0, 30] = alphabet.N
    codes = x.long() - alphabet.FIRST_BASE
    onehot = (torch.nn.functional.one_hot(codes.clamp(0, 3), 4) * ((codes >= 0) & (codes < 4))[..., None]).float()
    both = torch.cat([branch.weight, branch.weight.flip(1).flip(2)])
    fired = torch.relu(torch.nn.functional.conv1d(onehot.transpose(1, 2), both, branch.bias.repeat(2)))
    valid = (x[:, 9:] != alphabet.PAD)[:, None]
    expected = branch.project(((fired[:, :24] + fired[:, 24:] - branch.centre[:, None]) * valid).sum(-1))
    assert torch.allclose(branch(x), expected, atol=1e-4)
    assert torch.equal(branch(x[3:]), torch.zeros(1, 32))  # 5 bases: no span of 10 inside it
    assert expected_firing(8, 6) == pytest.approx(2 * sum(
        math.comb(8, m) * 0.25**m * 0.75 ** (8 - m) * (m - 5.5) for m in range(6, 9)))  # fmt: skip
    fresh = SeedBranch(1, 10, 6, 4, 1)
    cared = fresh.weight[0].sum(0) > 0
    seed = alphabet.FIRST_BASE + fresh.weight[0].argmax(0)
    seed[~cared] = alphabet.FIRST_BASE + (fresh.weight[0].argmax(0)[~cared] + 1) % 4
    for wrong, fires in ((2, True), (3, False)):
        tokens = seed.clone()
        flip = cared.nonzero()[:wrong, 0]
        tokens[flip] = alphabet.FIRST_BASE + (tokens[flip] - alphabet.FIRST_BASE + 1) % 4
        y = torch.relu(
            torch.nn.functional.conv1d(
                torch.nn.functional.one_hot(tokens - alphabet.FIRST_BASE, 4).float().T[None], fresh.weight, fresh.bias
            )
        )
        assert (float(y.detach()) > 0) == fires, wrong  # fmt: skip


def test_seed_branch_is_strand_invariant_and_its_ablation_is_the_bags() -> None:
    """A sequence and its reverse complement get one vector (like canonical k-mers); weight 0 in combine is
    the same checkpoint's bags alone, and the seed weight gets a gradient from the first step."""
    with_seeds = GeneAE(tiny(vector_seeds=16, seed_width=8, seed_care=6, seed_need=4))
    bags = GeneAE(tiny())
    bags.load_state_dict({k: v for k, v in with_seeds.state_dict().items() if k in bags.state_dict()})
    x, mask = random_batch(3, 120)
    complement = torch.tensor([0, 1, 2, alphabet.T, alphabet.G, alphabet.C, alphabet.A, alphabet.N])
    rc = complement[x].flip(1)
    assert torch.allclose(with_seeds.search_vector(x, mask), with_seeds.search_vector(rc, mask), atol=1e-4)
    sums = with_seeds.branch_sums(x, mask)
    assert sums.shape == (3, 3, 64)  # 5-mer bag, 7-mer bag, seeds
    assert not torch.allclose(with_seeds.combine(sums), bags.search_vector(x, mask))
    assert torch.allclose(with_seeds.combine(sums, 0.0), bags.search_vector(x, mask), atol=1e-6)
    out = with_seeds(x, mask, others=x.clone())
    out["vector"].pow(2).sum().backward()
    assert float(with_seeds.seed_weight.grad.abs()) > 0 and float(with_seeds.seeds.weight.grad.abs().sum()) > 0
    frozen = GeneAE(tiny(vector_seeds=16, seed_width=8, seed_care=6, seed_need=4, freeze_seeds=True))
    frozen(x, mask, others=x.clone())["vector"].pow(2).sum().backward()
    assert frozen.seeds.weight.grad is None and frozen.seeds.bias.grad is None  # model.freeze_seeds
    assert float(frozen.seeds.project.weight.grad.abs().sum()) > 0


def test_seed_branch_embeds_long_sequences_as_one_pass() -> None:
    """Pieces overlap by the seed's width less one, so every seed span is counted once: a 40 kb sequence
    embedded in pieces equals one pass over it (the bags count a few k-mers twice at each cut)."""
    enc = _encoder(tiny(vector_seeds=32))
    assert enc._pieces()[1] == 11  # seed width 12 > the 7-mer
    seq = np.random.default_rng(1).integers(alphabet.A, alphabet.T + 1, 40_000, dtype=np.uint8)
    whole = torch.from_numpy(seq.astype(np.int64))[None]
    with torch.no_grad():
        expected = enc.model.branch_sums(whole, torch.ones_like(whole, dtype=torch.bool))[0]
    got = enc.branch_sums([seq])[0]
    assert torch.allclose(got[2], expected[2], rtol=1e-4, atol=1e-2)  # the seeds: exactly one pass
    assert float(torch.nn.functional.cosine_similarity(got, expected, dim=-1).min()) > 0.9999
