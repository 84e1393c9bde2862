"""k-means codebook for speech features, in torch: k-means++ seeding on a subsample, then Lloyd passes.

The default metric is **cosine** (spherical k-means: unit-length features and centroids, nearest =
largest dot product). Whisper hidden states carry what was said in their direction, while their norm
varies with the layer, loudness and position in the clip and is dominated by a few outlier dimensions
(with no final LayerNorm, for an inner layer, norms differ by large factors from frame to frame); with
euclidean distance those norms would decide the clusters. Cosine also makes assignment one matmul on
unit vectors. ``metric="euclidean"`` is there for features that are already normalised.

Every Lloyd pass goes over all features in chunks (the features stay on the CPU or wherever they
are; only a chunk x K score matrix exists at once). Empty clusters are re-seeded with the points
farthest from their centroids. A seed fixes the subsample, the seeding and hence the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

METRICS = ("cosine", "euclidean")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def usage(counts: torch.Tensor) -> tuple[int, float]:
    """(codes used, perplexity exp(entropy) of the code distribution) from per-code counts."""
    total = float(counts.sum())
    if total <= 0:
        return 0, 0.0
    p = counts.double() / total
    p = p[p > 0]
    return int(p.numel()), float(torch.exp(-(p * p.log()).sum()))


@dataclass
class KMeansResult:
    """A fitted codebook and how the training features fell into it (with the final centroids)."""

    centroids: torch.Tensor  # (K, D), unit rows for cosine
    counts: torch.Tensor  # (K,) training frames per code
    inertia: float  # mean distance of a frame to its centroid (1 - cos, or squared euclidean)
    iterations: int

    @property
    def used(self) -> int:
        return usage(self.counts)[0]

    @property
    def perplexity(self) -> float:
        return usage(self.counts)[1]


def _prepared(x: torch.Tensor, metric: str) -> torch.Tensor:
    x = x.float()
    return F.normalize(x, dim=1) if metric == "cosine" else x


def _nearest(x: torch.Tensor, centroids: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid and distance for prepared rows ``x`` (one chunk)."""
    scores = x @ centroids.T
    if metric == "cosine":
        best, codes = scores.max(dim=1)
        return codes, (1.0 - best).clamp_(min=0.0)
    scores.sub_(0.5 * (centroids * centroids).sum(1)[None, :])  # x.c - |c|^2 / 2: larger is nearer
    best, codes = scores.max(dim=1)
    return codes, ((x * x).sum(1) - 2.0 * best).clamp_(min=0.0)


def assign(x: torch.Tensor, centroids: torch.Tensor, metric: str = "cosine", chunk: int = 65536) -> torch.Tensor:
    """Code (index of the nearest centroid) of each row of (N, D) ``x``: (N,) int64."""
    check_metric(metric)
    if x.ndim != 2 or x.shape[1] != centroids.shape[1]:
        raise ValueError(f"features of shape {tuple(x.shape)} do not match a codebook of {tuple(centroids.shape)}")
    centroids = centroids.to(x.device, torch.float32)
    out = [_nearest(_prepared(x[i : i + chunk], metric), centroids, metric)[0] for i in range(0, len(x), chunk)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def _distance(x: torch.Tensor, c: torch.Tensor, metric: str) -> torch.Tensor:
    """Distance of prepared rows ``x`` to one centroid ``c`` (D,)."""
    if metric == "cosine":
        return (1.0 - x @ c).clamp_(min=0.0)
    return ((x - c) ** 2).sum(1)


def _too_few(k: int, distinct: int, n: int, metric: str) -> ValueError:
    what = "directions" if metric == "cosine" else "points"
    return ValueError(f"cannot fit {k} codes: the features hold only {distinct} distinct {what} ({n} frames); "
                      "use fewer codes or more audio")


def kmeans_plus_plus(x: torch.Tensor, k: int, metric: str, generator: torch.Generator) -> torch.Tensor:
    """Up to ``k`` k-means++ seeds from prepared rows ``x``: each next seed drawn with probability proportional
    to its distance from the nearest seed so far. Fewer than ``k`` when every row lies on a seed already
    (distances below a millionth of the mean squared norm count as zero: rounding, not a new point)."""
    tiny = 1e-6 * float((x * x).sum(1).mean())
    first = int(torch.randint(len(x), (1,), generator=generator))
    seeds = [x[first]]
    nearest = _distance(x, x[first], metric)
    for _ in range(1, k):
        nearest.masked_fill_(nearest < tiny, 0.0)
        total = float(nearest.sum())
        if not total > 0.0:
            break
        j = int(torch.multinomial(nearest / total, 1, generator=generator))
        seeds.append(x[j])
        torch.minimum(nearest, _distance(x, x[j], metric), out=nearest)
    return torch.stack(seeds)


def fit_kmeans(features: torch.Tensor, k: int, metric: str = "cosine", iters: int = 30, seed: int = 0,
               init_points: int | None = None, chunk: int = 65536, tol: float = 1e-4) -> KMeansResult:
    """Fit ``k`` centroids to (N, D) ``features``.

    k-means++ seeding on a random subsample of ``init_points`` rows (default max(4k, 10000), at most N),
    then up to ``iters`` Lloyd passes over all rows, stopping early once the mean distance improves by less
    than a fraction ``tol``. ``ValueError`` when the features hold fewer than ``k`` distinct points.
    """
    check_metric(metric)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"k-means needs a non-empty (N, D) feature matrix, got shape {tuple(features.shape)}")
    if k < 1:
        raise ValueError(f"the number of codes must be >= 1, got {k}")
    if not torch.isfinite(features).all():
        raise ValueError("k-means features contain NaN or infinite values")
    x = _prepared(features, metric)
    n, d = x.shape
    if n < k:
        raise ValueError(f"cannot fit {k} codes on only {n} feature frames; use fewer codes or more audio")
    generator = torch.Generator().manual_seed(seed)
    m = min(n, init_points or max(4 * k, 10000))
    sample = x[torch.randperm(n, generator=generator)[:m]] if m < n else x
    centroids = kmeans_plus_plus(sample, k, metric, generator)
    if len(centroids) < k and m < n:  # the subsample ran out of distinct points: seed from all of them
        centroids = kmeans_plus_plus(x, k, metric, generator)
    if len(centroids) < k:
        raise _too_few(k, len(centroids), n, metric)
    previous = math.inf
    iterations = 0
    for iterations in range(1, iters + 1):  # noqa: B007 (the count is reported)
        sums = torch.zeros(k, d, dtype=torch.float64, device=x.device)
        counts = torch.zeros(k, dtype=torch.long, device=x.device)
        distances = torch.empty(n, device=x.device)
        for i in range(0, n, chunk):
            codes, dist = _nearest(x[i : i + chunk], centroids, metric)
            sums.index_add_(0, codes, x[i : i + chunk].double())
            counts += torch.bincount(codes, minlength=k)
            distances[i : i + chunk] = dist
        inertia = float(distances.mean())
        new = (sums / counts.clamp(min=1)[:, None]).float()
        empty = (counts == 0).nonzero().flatten()
        if len(empty):  # re-seed with the worst-served points
            new[empty] = x[distances.topk(len(empty)).indices]
        centroids = F.normalize(new, dim=1) if metric == "cosine" else new
        if len(empty) == 0 and previous - inertia <= tol * previous < math.inf:
            break
        previous = inertia
    counts = torch.zeros(k, dtype=torch.long, device=x.device)
    total = 0.0
    for i in range(0, n, chunk):  # how the final centroids split the data
        codes, dist = _nearest(x[i : i + chunk], centroids, metric)
        counts += torch.bincount(codes, minlength=k)
        total += float(dist.double().sum())
    return KMeansResult(centroids=centroids.cpu(), counts=counts.cpu(), inertia=total / n, iterations=iterations)
