"""The three alignment maps' closed forms and training, used by :func:`~safesteer_diffusers.build.alignment.fit_alignment`.

Owns the arithmetic of each map (conventions and selection on held-out anchors are described in
:mod:`safesteer_diffusers.build.alignment`): maps act on rows, ``Y ~ (X - x_mean) @ W + y_mean`` with
``W [Ds, Dt]``, and every map object offers ``predict`` (with bias), ``apply`` (its linear part, for
transport) and ``apply_transpose``.

- ``"ridge"`` (:func:`ridge`, :func:`choose_alpha`): closed-form ridge regression on centred features,
  ``lambda = alpha * trace(Xc^T Xc) / Ds`` with ``alpha`` from a log grid (:data:`DEFAULT_ALPHAS`), chosen
  by held-out pooled R^2. Solved in the primal (``Ds x Ds`` system) when ``N >= Ds`` and in the dual
  (kernel, ``N x N``) form when ``N < Ds``.
- ``"svd"`` (:func:`reduced_rank`): reduced-rank ridge regression (``variant="rrr"``, default): the ridge
  solution projected on the top-``k`` right singular directions of its fitted values (augmented by the ridge
  penalty), ``W_k = W_ridge V_k V_k^T`` with ``V`` the eigenvectors of ``W_ridge^T (Xc^T Xc + lambda I)
  W_ridge = Yc^T Xc W_ridge``. With whitened inputs these are the right singular vectors of the
  cross-covariance ``Xc^T Yc``; it is the best rank-``k`` map in the ridge metric. ``k`` is chosen on the
  held-out split (the smallest rank within ``rank_tol`` of the best held-out R^2); ``k = min(Ds, Dt)``
  equals ridge. Or ``variant="procrustes"``: ``W_k = s U_k V_k^T`` from the SVD ``U S V^T`` of the
  cross-covariance itself (a scaled semi-orthogonal map; ``s`` fitted by least squares), also with ``k``
  chosen on held-out.
- ``"mlp"`` (:func:`fit_mlp`): ``f(x) = (z @ W_ridge + r * out(gelu(hidden(z)))) * y_scale + y_mean`` on
  standardised inputs ``z`` (one hidden layer, width ``mlp_hidden``): the ridge map (closed form, fixed)
  plus a learned residual, ``r`` the RMS of the ridge residual. The output layer starts at zero, so training
  (Adam, early stopping on held-out MSE, best epoch kept) starts from ridge and never ends worse on held-out
  anchors. Its linear part is the Jacobian at the anchor mean (``torch.func.jvp``).

All linear algebra runs in the inputs' dtype and device (``fit_alignment`` passes float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_ALPHAS = tuple(10.0 ** (k / 2) for k in range(-16, 7))
"""Ridge grid: lambda = alpha * trace(Xc^T Xc) / Ds, i.e. alpha relative to N times the mean feature variance."""


# ---------------------------------------------------------------------- maps
class LinearMap:
    """``Y = (X - x_mean) @ weight + y_mean``; weight ``[Din, Dout]``."""

    def __init__(self, weight: torch.Tensor, x_mean: torch.Tensor, y_mean: torch.Tensor):
        self.weight, self.x_mean, self.y_mean = weight.float(), x_mean.float(), y_mean.float()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Target features ``[N, Dout]`` of source features ``[N, Din]`` (with the bias)."""
        return (x.to(self.weight) - self.x_mean) @ self.weight + self.y_mean

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """The linear part on a displacement ``[..., Din]`` -> ``[..., Dout]`` (no bias)."""
        return v.to(self.weight) @ self.weight

    def apply_transpose(self, u: torch.Tensor) -> torch.Tensor:
        """The transpose of the linear part, ``[..., Dout]`` -> ``[..., Din]``."""
        return u.to(self.weight) @ self.weight.T


class ResidualMLP(torch.nn.Module):
    """``skip(z) + residual_scale * out(gelu(hidden(z)))``: a fixed ridge map plus a learned residual."""

    def __init__(self, d_in: int, d_out: int, hidden: int):
        super().__init__()
        self.skip = torch.nn.Linear(d_in, d_out, bias=False)
        self.hidden = torch.nn.Linear(d_in, hidden)
        self.out = torch.nn.Linear(hidden, d_out)
        self.register_buffer("residual_scale", torch.ones(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised targets of standardised inputs ``z``."""
        return self.skip(z) + self.residual_scale * self.out(torch.nn.functional.gelu(self.hidden(z)))


class MLPMap:
    """``f(x) = net((x - x_mean) / x_scale) * y_scale + y_mean``; linear part = Jacobian at ``x_mean``."""

    def __init__(self, net, x_mean, x_scale, y_mean, y_scale):
        self.net, self.x_mean, self.x_scale, self.y_mean, self.y_scale = net, x_mean, x_scale, y_mean, y_scale

    def _f(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.x_mean) / self.x_scale) * self.y_scale + self.y_mean

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Target features of source features (with the bias), no gradients."""
        with torch.no_grad():
            return self._f(x.to(self.x_mean))

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """The Jacobian at ``x_mean`` applied to displacements ``[..., Din]`` (one ``jvp`` per row)."""
        from torch.func import jvp

        rows = v.to(self.x_mean).reshape(-1, self.x_mean.shape[0])
        out = [jvp(self._f, (self.x_mean,), (row,))[1] for row in rows]
        return torch.stack(out).reshape(*v.shape[:-1], -1).detach()

    def apply_transpose(self, u: torch.Tensor) -> torch.Tensor:
        """The transposed Jacobian at ``x_mean`` applied to ``[..., Dout]`` (one ``vjp`` pullback per row)."""
        from torch.func import vjp

        _, pullback = vjp(self._f, self.x_mean)
        rows = u.to(self.x_mean).reshape(-1, self.y_mean.shape[0])
        out = [pullback(row)[0] for row in rows]
        return torch.stack(out).reshape(*u.shape[:-1], -1).detach()


# ---------------------------------------------------------------------- fitting
@dataclass
class MapOptions:
    """Hyperparameters of the maps, as passed to :func:`~safesteer_diffusers.build.alignment.fit_alignment`."""

    alphas: tuple[float, ...]
    svd_variant: str
    rank_tol: float
    mlp_hidden: int
    mlp_epochs: int
    mlp_patience: int
    mlp_warmup: int
    mlp_lr: float
    mlp_batch_size: int


def ridge_lambda(xc: torch.Tensor, alpha: float) -> float:
    """The ridge penalty ``lambda = alpha * trace(Xc^T Xc) / Ds`` of a relative ``alpha``.

    Args:
        xc: ``[N, Ds]`` centred source features.
        alpha: the grid value (relative to the mean feature variance times ``N``).

    Returns:
        ``lambda`` as a float.
    """
    return alpha * float((xc * xc).sum()) / xc.shape[1]


def ridge(x, y, alpha):
    """Closed-form ridge on centred data, in the primal or the dual form by shape.

    Args:
        x: ``[N, Ds]`` source features (centred here).
        y: ``[N, Dt]`` target features (centred here).
        alpha: relative penalty (see :func:`ridge_lambda`).

    Returns:
        ``(W [Ds, Dt], x_mean, y_mean)``: the arguments of :class:`LinearMap`.
    """
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    lam = ridge_lambda(xc, alpha)
    n, d = xc.shape
    if n >= d:
        gram = xc.T @ xc
        gram.diagonal().add_(lam)
        weight = torch.linalg.solve(gram, xc.T @ yc)
    else:  # dual (kernel) form: an N x N system when there are fewer anchors than source features
        kernel = xc @ xc.T
        kernel.diagonal().add_(lam)
        weight = xc.T @ torch.linalg.solve(kernel, yc)
    return weight, x_mean, y_mean


def choose_alpha(xt, yt, xh, yh, alphas) -> tuple[float, list[float]]:
    """Held-out R^2 of ridge for every alpha, from one eigendecomposition.

    Args:
        xt, yt: train source / target features.
        xh, yh: held-out source / target features.
        alphas: the grid (relative penalties).

    Returns:
        ``(alpha, scores)``: the best alpha (equal scores: the smaller) and the held-out R^2 of every alpha.

    Raises:
        ValueError: when the train source features are constant.
    """
    x_mean, y_mean = xt.mean(0), yt.mean(0)
    xc, yc = xt - x_mean, yt - y_mean
    n, d = xc.shape
    scale = float((xc * xc).sum()) / d
    if scale == 0.0:
        raise ValueError("x_source is constant over the anchors (zero variance); the map cannot be fitted.")
    if n >= d:
        eigenvalues, vectors = torch.linalg.eigh(xc.T @ xc)
        features, coefficients = (xh - x_mean) @ vectors, vectors.T @ (xc.T @ yc)
    else:
        eigenvalues, vectors = torch.linalg.eigh(xc @ xc.T)
        features, coefficients = (xh - x_mean) @ (xc.T @ vectors), vectors.T @ yc
    eigenvalues = eigenvalues.clamp_min(0.0)
    residual_base = yh - y_mean
    total = float(((yh - yh.mean(0)) ** 2).sum())
    scores = []
    for alpha in alphas:
        shrink = 1.0 / (eigenvalues + alpha * scale)
        predicted = (features * shrink) @ coefficients
        scores.append(1.0 - float(((residual_base - predicted) ** 2).sum()) / max(total, 1e-300))
    best = max(range(len(alphas)), key=lambda i: (scores[i], -i))  # equal scores: the smaller alpha
    return float(alphas[best]), scores


def reduced_rank(xt, yt, xh, yh, alpha, options, rank: int | None = None):
    """Fit the ``svd`` map (reduced-rank ridge or Procrustes, by ``options.svd_variant``) on ``(xt, yt)``.

    Args:
        xt, yt: features the map is fitted on.
        xh, yh: held-out features that choose the rank (``None`` when ``rank`` is given).
        alpha: ridge penalty of the ``rrr`` variant.
        options: :class:`MapOptions` (``svd_variant``, ``rank_tol``).
        rank: a fixed rank (refit on all anchors), or ``None`` to choose it on the held-out features.

    Returns:
        ``(map, rank, curve)``: a :class:`LinearMap`, the rank kept and the held-out R^2 of every rank
        (empty when ``rank`` was given).
    """
    x_mean, y_mean = xt.mean(0), yt.mean(0)
    xc, yc = xt - x_mean, yt - y_mean
    if options.svd_variant == "rrr":
        ridge_weight = ridge(xt, yt, alpha)[0]
        metric = yc.T @ (xc @ ridge_weight)  # = W^T (Xc^T Xc + lambda I) W, symmetric PSD [Dt, Dt]
        eigenvalues, vectors = torch.linalg.eigh((metric + metric.T) / 2)
        basis = vectors.flip(-1)[:, : min(xc.shape[1], yc.shape[1])]  # descending
        weights_left, scales = ridge_weight @ basis, None
    else:
        u, s, vh = torch.linalg.svd(xc.T @ yc, full_matrices=False)
        basis = vh.T  # [Dt, m]
        left = xc @ u  # [n, m]
        # least-squares scale of the rank-k map s_k U_k V_k^T: sum(S_k) / ||Xc U_k||^2
        scales = s.cumsum(0) / (left * left).sum(0).cumsum(0).clamp_min(1e-300)
        weights_left = u
    curve: list[float] = []
    if rank is None:
        hl = (xh - x_mean) @ (weights_left)  # [nh, m] held-out coordinates (before scaling)
        target = (yh - y_mean) @ basis
        base = float(((yh - y_mean) ** 2).sum())
        total = max(float(((yh - yh.mean(0)) ** 2).sum()), 1e-300)
        cross = (hl * target).sum(0).cumsum(0)
        power = (hl * hl).sum(0).cumsum(0)
        if scales is None:
            # basis is orthonormal, so the rank-k error splits into per-component terms
            sse = base - 2 * cross + power
        else:
            sse = base - 2 * scales * cross + scales * scales * power
        curve = (1.0 - sse / total).tolist()
        best = max(curve)
        rank = next(k + 1 for k, value in enumerate(curve) if value >= best - options.rank_tol)
    kept = basis[:, :rank]
    if scales is None:
        weight = weights_left[:, :rank] @ kept.T
    else:
        weight = scales[rank - 1] * weights_left[:, :rank] @ kept.T
    return LinearMap(weight, x_mean, y_mean), rank, curve


def fit_mlp(xt, yt, xh, yh, alpha, options, seed):
    """Train the ``mlp`` map: the fixed ridge map plus a residual network, early-stopped on held-out MSE.

    Args:
        xt, yt: train source / target features.
        xh, yh: held-out features (early stopping; the best epoch is kept).
        alpha: ridge penalty of the fixed skip path.
        options: :class:`MapOptions` (the ``mlp_*`` settings).
        seed: seed of the initialisation and the batch order.

    Returns:
        ``(map, params)``: an :class:`MLPMap` and a JSON-ready dict of its settings and training.
    """
    device = xt.device
    x_mean, y_mean = xt.mean(0), yt.mean(0)
    x_scale = xt.std(0, correction=0)
    x_scale = torch.where(x_scale > 1e-8 * x_scale.max(), x_scale, x_scale.max()).clamp_min(1e-12)
    y_scale = float((yt - y_mean).pow(2).mean().sqrt()) or 1.0  # one scalar: MSE tracks the pooled R^2
    zt, zh = (xt - x_mean) / x_scale, (xh - x_mean) / x_scale
    tt, th = (yt - y_mean) / y_scale, (yh - y_mean) / y_scale
    skip_weight = ridge(zt, tt, alpha)[0]
    # The residual path learns what ridge misses. Its targets are scaled to unit RMS: Adam's steps have a
    # fixed size, and a small residual would otherwise be overshot from the first step.
    residual_scale = float((tt - zt @ skip_weight).pow(2).mean().sqrt()) or 1.0
    zt, zh, tt, th = zt.float(), zh.float(), tt.float(), th.float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ResidualMLP(xt.shape[1], yt.shape[1], options.mlp_hidden)
    with torch.no_grad():
        net.skip.weight.copy_(skip_weight.T.float())
        net.residual_scale.fill_(residual_scale)
        net.out.weight.zero_()  # start exactly at the ridge map
        net.out.bias.zero_()
    net.skip.requires_grad_(False)  # the closed-form ridge part stays fixed
    net = net.to(device)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=options.mlp_lr)
    generator = torch.Generator().manual_seed(int(seed))

    def heldout_loss() -> float:
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(net(zh), th))

    best_loss, best_epoch = heldout_loss(), 0
    best_state = {k: v.clone() for k, v in net.state_dict().items()}
    stale, epochs_run = 0, 0
    for epoch in range(1, options.mlp_epochs + 1):
        epochs_run = epoch
        for rows in torch.randperm(zt.shape[0], generator=generator).split(options.mlp_batch_size):
            rows = rows.to(device)
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(net(zt[rows]), tt[rows]).backward()
            optimizer.step()
        loss = heldout_loss()
        if loss < best_loss * (1 - 1e-4):
            best_loss, best_epoch, stale = loss, epoch, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        elif epoch > options.mlp_warmup:  # the first epochs may wander off the ridge start: no patience yet
            stale += 1
            if stale >= options.mlp_patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    mlp_map = MLPMap(net, x_mean.float(), x_scale.float(), y_mean.float(), torch.tensor(y_scale).to(device))
    params = {
        "hidden": options.mlp_hidden,
        "activation": "gelu",
        "skip": "ridge (fixed)",
        "alpha": alpha,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "lr": options.mlp_lr,
        "batch_size": options.mlp_batch_size,
        "patience": options.mlp_patience,
        "warmup": options.mlp_warmup,
    }
    return mlp_map, params
