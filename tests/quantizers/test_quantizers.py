import pytest
import torch
import torch.nn.functional as F

from moss_components.quantizers import FSQ, CosineVQ


def test_cosine_vq_picks_most_similar_code():
    vq = CosineVQ(dim=16, codebook_size=8, code_dim=4, warmup_steps=0).eval()
    z = torch.randn(2, 5, 16)
    out = vq(z)
    zn = F.normalize(vq.proj_in(z), dim=-1)
    assert torch.equal(out.ids, (zn @ vq.codebook.T).argmax(-1))
    torch.testing.assert_close(out.quantized, vq.decode(out.ids))


def test_cosine_vq_warmup_bypasses_then_quantizes():
    vq = CosineVQ(dim=8, codebook_size=16, code_dim=4, warmup_steps=2)
    z = torch.randn(2, 3, 8)
    assert vq(z).bypassed and vq(z).bypassed
    out = vq(z)
    assert not out.bypassed and out.loss > 0


def test_cosine_vq_straight_through_gradient():
    vq = CosineVQ(dim=8, codebook_size=16, code_dim=4, warmup_steps=0)
    z = torch.randn(2, 3, 8, requires_grad=True)
    vq(z).quantized.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_dead_codes_are_restarted_on_data():
    torch.manual_seed(0)
    vq = CosineVQ(dim=8, codebook_size=64, code_dim=4, warmup_steps=0, restart_every=1, dead_threshold=0.5)
    z = torch.randn(4, 50, 8)
    for _ in range(30):
        vq(z)
    usage = torch.bincount(vq.eval()(z).ids.flatten(), minlength=64)
    assert (usage > 0).float().mean() > 0.6


def test_warmup_ends_with_a_kmeans_codebook_that_covers_clustered_data():
    """Data in 16 tight clusters: k-means at the switch puts a code on every cluster (random codes would not)."""
    torch.manual_seed(0)
    vq = CosineVQ(dim=4, codebook_size=16, code_dim=4, warmup_steps=3, kmeans_window=3, restart_every=1000)
    with torch.no_grad():  # identity projection, so the clusters are the code space's
        vq.proj_in.weight.copy_(torch.eye(4))
        vq.proj_in.bias.zero_()
    centers = F.normalize(torch.randn(16, 4), dim=-1)
    data = lambda: centers[torch.randint(0, 16, (1, 400))] + 0.01 * torch.randn(1, 400, 4)  # noqa: E731
    for _ in range(3):
        assert vq(data()).bypassed
    out = vq(data())
    assert not out.bypassed and not vq._kmeans_vectors
    nearest_code = (centers @ vq.codebook.T).max(dim=-1).values
    assert nearest_code.min() > 0.99, nearest_code
    assert len(out.ids.unique()) == 16


def test_mask_excludes_padding_from_updates():
    vq = CosineVQ(dim=8, codebook_size=4, code_dim=4, warmup_steps=0)
    before = vq.ema_count.clone()
    vq(torch.randn(1, 3, 8), mask=torch.zeros(1, 3, dtype=torch.bool))
    assert torch.equal(vq.ema_count, before)


@pytest.mark.parametrize("levels", [[8, 8, 8], [5, 3]])
def test_fsq_ids_roundtrip(levels):
    fsq = FSQ(dim=12, levels=levels)
    assert fsq.codebook_size == torch.tensor(levels).prod()
    out = fsq(torch.randn(2, 7, 12) * 3)
    assert out.ids.min() >= 0 and out.ids.max() < fsq.codebook_size
    torch.testing.assert_close(out.quantized, fsq.decode(out.ids), atol=1e-5, rtol=1e-5)


def test_ids_outside_codebook_named():
    vq = CosineVQ(dim=8, codebook_size=16)
    with pytest.raises(ValueError, match="speech id 16 .*codebook size 16"):
        vq.decode(torch.tensor([[1, 16]]))
    with pytest.raises(ValueError, match="speech id -1"):
        FSQ(dim=4).decode(torch.tensor([[-1]]))
