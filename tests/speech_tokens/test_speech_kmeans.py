"""The k-means codebook: recovers well-separated blobs, is deterministic for a seed, refuses too many codes."""

from __future__ import annotations

import pytest
import torch

from osum.speech_tokens.kmeans import assign, fit_kmeans, usage


def blobs(k: int, per: int, dim: int, seed: int, spread: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=1)
    labels = torch.arange(k).repeat_interleave(per)
    x = centers[labels] + spread * torch.randn(k * per, dim, generator=g)
    perm = torch.randperm(k * per, generator=g)
    return x[perm], labels[perm], centers


def same_partition(codes: torch.Tensor, labels: torch.Tensor) -> bool:
    """Every true blob is one code and no two blobs share a code."""
    pairs = set(zip(labels.tolist(), codes.tolist(), strict=True))
    return len(pairs) == len(set(labels.tolist())) == len({c for _, c in pairs})


def test_cosine_recovers_directions_whatever_the_norms():
    x, labels, centers = blobs(6, 80, 16, seed=0, spread=0.05)
    scale = torch.empty(len(x), 1).uniform_(0.1, 50.0, generator=torch.Generator().manual_seed(1))
    result = fit_kmeans(x * scale, 6, metric="cosine", seed=0)
    codes = assign(x * scale, result.centroids, "cosine")
    assert same_partition(codes, labels)
    assert result.used == 6 and result.counts.tolist() == [80] * 6
    assert result.perplexity == pytest.approx(6.0)
    cos = result.centroids @ centers.T  # each fitted centroid points along one true direction
    assert bool((cos.max(dim=1).values > 0.99).all())
    torch.testing.assert_close(result.centroids.norm(dim=1), torch.ones(6))


def test_euclidean_recovers_means():
    x, labels, centers = blobs(5, 60, 8, seed=2, spread=0.02)
    x = x * 10.0
    result = fit_kmeans(x, 5, metric="euclidean", seed=3, chunk=37)  # chunks that do not divide N
    codes = assign(x, result.centroids, "euclidean", chunk=50)
    assert same_partition(codes, labels)
    for code in range(5):
        torch.testing.assert_close(result.centroids[code], x[codes == code].mean(0), atol=1e-4, rtol=1e-4)
    assert result.inertia == pytest.approx(8 * 0.2**2, rel=0.3)  # the noise, 8 dims of variance 0.2^2


def test_deterministic_for_a_seed():
    x = torch.randn(3000, 12, generator=torch.Generator().manual_seed(5))
    a = fit_kmeans(x, 40, seed=7, init_points=500, iters=5)
    b = fit_kmeans(x, 40, seed=7, init_points=500, iters=5)
    c = fit_kmeans(x, 40, seed=8, init_points=500, iters=5)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.counts, b.counts)
    assert not torch.equal(a.centroids, c.centroids)


def test_more_codes_than_distinct_points_is_a_clear_error():
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5]])
    with pytest.raises(ValueError, match="only 3 distinct points"):
        fit_kmeans(points.repeat(50, 1), 5, metric="euclidean")
    with pytest.raises(ValueError, match="only 3 distinct directions"):  # 2x a point is the same direction
        fit_kmeans(torch.cat([points, 2 * points]).repeat(20, 1), 4, metric="cosine")
    with pytest.raises(ValueError, match="cannot fit 10 codes on only 4 feature frames"):
        fit_kmeans(torch.randn(4, 3), 10)
    # exactly as many distinct points as codes: each point its own code
    result = fit_kmeans(points.repeat(50, 1), 3, metric="euclidean")
    assert sorted(result.counts.tolist()) == [50, 50, 50]


def test_bad_input_and_usage():
    with pytest.raises(ValueError, match="metric"):
        fit_kmeans(torch.randn(10, 2), 2, metric="manhattan")
    with pytest.raises(ValueError, match="NaN"):
        fit_kmeans(torch.tensor([[0.0, float("nan")]] * 4), 2)
    with pytest.raises(ValueError, match="do not match"):
        assign(torch.randn(5, 3), torch.randn(2, 4))
    assert usage(torch.tensor([5, 5, 0, 0])) == (2, pytest.approx(2.0))
    assert usage(torch.zeros(3)) == (0, 0.0)
