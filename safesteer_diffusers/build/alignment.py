"""Benign-only alignment of a source space to a target text space, transport, calibration and gates.

The same benign anchor prompts go through the source model and the target's text encoder, giving paired
features ``X [N, Ds]`` and ``Y [N, Dt]``. :func:`fit_alignment` fits a map ``Y ~ f(X)`` on them (the target
side never sees unsafe text) and :meth:`Alignment.transport` carries a direction through the map's linear
part: a direction is a displacement, so no bias, and the forward map is used (``d_t = W^T d_s``), never its
pseudo-inverse (design.md section 6).

Conventions: maps act on rows, ``Y ~ (X - x_mean) @ W + y_mean`` with ``W [Ds, Dt]``; ``transport(v) = v @ W``.

Maps (hyperparameters chosen on a held-out split of the anchors, deterministic under ``seed``):

- ``"ridge"``: closed-form ridge regression on centred features. ``lambda = alpha * trace(Xc^T Xc) / Ds``
  with ``alpha`` from a log grid, chosen by held-out pooled R^2; then refit on all anchors. Solved in the
  primal (``Ds x Ds`` system) when ``N >= Ds`` and in the dual (kernel, ``N x N``) form when ``N < Ds``.
- ``"svd"``: reduced-rank ridge regression (``variant="rrr"``, default): the ridge solution projected on
  the top-``k`` right singular directions of its fitted values (augmented by the ridge penalty),
  ``W_k = W_ridge V_k V_k^T`` with ``V`` the eigenvectors of ``W_ridge^T (Xc^T Xc + lambda I) W_ridge =
  Yc^T Xc W_ridge``. With whitened inputs these are the right singular vectors of the cross-covariance
  ``Xc^T Yc``; it is the best rank-``k`` map in the ridge metric. ``k`` is chosen on the held-out split (the
  smallest rank within ``rank_tol`` of the best held-out R^2); ``k = min(Ds, Dt)`` equals ridge. Or
  ``variant="procrustes"``: ``W_k = s U_k V_k^T`` from the SVD ``U S V^T`` of the cross-covariance itself
  (a scaled semi-orthogonal map; ``s`` fitted by least squares), also with ``k`` chosen on held-out.
- ``"mlp"``: ``f(x) = (z @ W_ridge + r * out(gelu(hidden(z)))) * y_scale + y_mean`` on standardised
  inputs ``z`` (one hidden layer, width ``mlp_hidden``): the ridge map (closed form, fixed) plus a learned
  residual, ``r`` the RMS of the ridge residual. The output layer starts at zero, so training (Adam, early
  stopping on held-out MSE, best epoch kept) starts from ridge and never ends worse on held-out anchors.
  ``transport(v)`` is the Jacobian at the anchor mean applied to ``v`` (``torch.func.jvp``).

``symmetric=True`` also fits the backward map (target -> source, same method) and returns
``|F v| * unit(unit(F v) + unit(B^T v))``: the average of the unit forward transport and the unit image of
``v`` under the transpose of the backward map's linear part, with the forward magnitude. On two sentence
encoders this gave a small, repeatable gain (design.md section 6); it doubles the fitting cost.

Example::

    align = fit_alignment(source_anchor_feats, target_anchor_feats, method="auto")
    v_target = align.transport(estimate.global_direction)
    vector, stats = calibrate(v_target, benign_token_states, mask=benign_mask)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from safesteer_diffusers.steering.maths import gate_scores

ALIGNMENT_METHODS = ("svd", "ridge", "mlp")
SVD_VARIANTS = ("rrr", "procrustes")
CALIBRATION_STATISTICS = ("token_std", "mean_norm")
DEFAULT_ALPHAS = tuple(10.0 ** (k / 2) for k in range(-16, 7))
"""Ridge grid: lambda = alpha * trace(Xc^T Xc) / Ds, i.e. alpha relative to N times the mean feature variance."""

_AUTO_ORDER = ("ridge", "svd", "mlp")  # tie-break for method="auto": the simpler map wins equal scores
_TIE = 1e-9


# ---------------------------------------------------------------------- maps
class _LinearMap:
    """``Y = (X - x_mean) @ weight + y_mean``; weight ``[Din, Dout]``."""

    def __init__(self, weight: torch.Tensor, x_mean: torch.Tensor, y_mean: torch.Tensor):
        self.weight, self.x_mean, self.y_mean = weight.float(), x_mean.float(), y_mean.float()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.weight) - self.x_mean) @ self.weight + self.y_mean

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        return v.to(self.weight) @ self.weight

    def apply_transpose(self, u: torch.Tensor) -> torch.Tensor:
        return u.to(self.weight) @ self.weight.T


class _MLP(torch.nn.Module):
    """``skip(z) + residual_scale * out(gelu(hidden(z)))``: a fixed ridge map plus a learned residual."""

    def __init__(self, d_in: int, d_out: int, hidden: int):
        super().__init__()
        self.skip = torch.nn.Linear(d_in, d_out, bias=False)
        self.hidden = torch.nn.Linear(d_in, hidden)
        self.out = torch.nn.Linear(hidden, d_out)
        self.register_buffer("residual_scale", torch.ones(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.skip(z) + self.residual_scale * self.out(torch.nn.functional.gelu(self.hidden(z)))


class _MLPMap:
    """``f(x) = net((x - x_mean) / x_scale) * y_scale + y_mean``; linear part = Jacobian at ``x_mean``."""

    def __init__(self, net, x_mean, x_scale, y_mean, y_scale):
        self.net, self.x_mean, self.x_scale, self.y_mean, self.y_scale = net, x_mean, x_scale, y_mean, y_scale

    def _f(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.x_mean) / self.x_scale) * self.y_scale + self.y_mean

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._f(x.to(self.x_mean))

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        from torch.func import jvp

        rows = v.to(self.x_mean).reshape(-1, self.x_mean.shape[0])
        out = [jvp(self._f, (self.x_mean,), (row,))[1] for row in rows]
        return torch.stack(out).reshape(*v.shape[:-1], -1).detach()

    def apply_transpose(self, u: torch.Tensor) -> torch.Tensor:
        from torch.func import vjp

        _, pullback = vjp(self._f, self.x_mean)
        rows = u.to(self.x_mean).reshape(-1, self.y_mean.shape[0])
        out = [pullback(row)[0] for row in rows]
        return torch.stack(out).reshape(*u.shape[:-1], -1).detach()


# ---------------------------------------------------------------------- result
@dataclass
class Alignment:
    """A fitted benign-anchor map from a source space to a target space.

    Attributes:
        method: ``"svd"``, ``"ridge"`` or ``"mlp"`` (the one kept when fitted with ``"auto"``).
        params: chosen hyperparameters (``alpha``/``lambda``, ``rank``, ``variant``, MLP settings, ...).
        r2: held-out pooled R^2 of the predicted target features,
            ``1 - sum ||y - y_hat||^2 / sum ||y - mean_holdout(y)||^2`` (variance-weighted over dimensions).
        cosine: mean held-out cosine between predicted and true target features, both centred on the train
            anchors' target mean.
        scores: method -> held-out R^2 of every method fitted (one entry unless ``method="auto"``).
        n_anchors, n_holdout, source_dim, target_dim, seed, holdout: how it was fitted.
        symmetric: whether :meth:`transport` averages with the backward map (see the module docstring).
        backward_r2: held-out R^2 of the backward map (target -> source) when ``symmetric``.

    Held-out statistics come from the map fitted on the train split; the linear maps are then refitted on
    all anchors with the chosen hyperparameters (the MLP keeps its train-split weights).

    Example:
        >>> align = fit_alignment(x, y, method="ridge")
        >>> align.transport(v).shape, align.r2
    """

    method: str
    params: dict
    r2: float
    cosine: float
    n_anchors: int
    n_holdout: int
    source_dim: int
    target_dim: int
    seed: int = 0
    holdout: float = 0.2
    scores: dict[str, float] = field(default_factory=dict)
    symmetric: bool = False
    backward_r2: float | None = None
    _forward: object = field(default=None, repr=False)
    _backward: object = field(default=None, repr=False)

    def transport(self, vector: torch.Tensor) -> torch.Tensor:
        """Carry a source direction ``[Ds]`` (or a stack ``[K, Ds]``) into the target space.

        Uses the linear part of the map only (a direction is a displacement: no bias). For ``mlp`` that is
        the Jacobian at the anchor mean. With ``symmetric``, see the module docstring.

        Returns:
            ``[Dt]`` (or ``[K, Dt]``) float32 on CPU.

        Example:
            >>> align.transport(estimate.global_direction)
        """
        v = _as_matrix(vector, "vector", allow_1d=True)
        if v.shape[-1] != self.source_dim:
            raise ValueError(
                f"transport: the vector has {v.shape[-1]} features but this alignment maps a "
                f"{self.source_dim}-d source space; transport directions from the source model it was fitted on."
            )
        forward = self._forward.apply(v)
        if not self.symmetric:
            return forward.float().cpu()
        backward = self._backward.apply_transpose(v)
        norms = forward.norm(dim=-1, keepdim=True)
        mixed = _unit(forward) + _unit(backward)
        return (_unit(mixed) * norms).float().cpu()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted target features ``[N, Dt]`` of source features ``[N, Ds]`` (forward map, with bias)."""
        x = _as_matrix(x, "x", allow_1d=True)
        if x.shape[-1] != self.source_dim:
            raise ValueError(f"predict: expected {self.source_dim} source features, got {x.shape[-1]}.")
        return self._forward.predict(x).float().cpu()

    def to_dict(self) -> dict:
        """JSON-ready summary for the ``alignment`` entry of pack metadata."""
        out = {
            "method": self.method,
            "params": _jsonable(self.params),
            "heldout_r2": round(self.r2, 6),
            "heldout_cosine": round(self.cosine, 6),
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
            "n_anchors": self.n_anchors,
            "n_holdout": self.n_holdout,
            "source_dim": self.source_dim,
            "target_dim": self.target_dim,
            "seed": self.seed,
            "holdout": self.holdout,
            "symmetric": self.symmetric,
        }
        if self.backward_r2 is not None:
            out["backward_r2"] = round(self.backward_r2, 6)
        return out


# ---------------------------------------------------------------------- fitting
def fit_alignment(
    x_source: torch.Tensor,
    y_target: torch.Tensor,
    method: str = "svd",
    *,
    seed: int = 0,
    holdout: float = 0.2,
    symmetric: bool = False,
    alphas: Sequence[float] | None = None,
    svd_variant: str = "rrr",
    rank_tol: float = 1e-3,
    mlp_hidden: int = 256,
    mlp_epochs: int = 300,
    mlp_patience: int = 20,
    mlp_warmup: int = 10,
    mlp_lr: float = 1e-2,
    mlp_batch_size: int = 256,
) -> Alignment:
    """Fit a map from source to target features of the same benign anchors.

    Args:
        x_source: ``[N, Ds]`` source features of the anchors.
        y_target: ``[N, Dt]`` target features of the same anchors, same row order.
        method: ``"svd"``, ``"ridge"``, ``"mlp"`` (see the module docstring) or ``"auto"``: fit all three and
            keep the best held-out R^2 (all scores in :attr:`Alignment.scores`; equal scores favour ridge,
            then svd).
        seed: seed of the held-out split (and of the MLP's initialisation and batches).
        holdout: fraction of anchors held out to choose hyperparameters and report R^2 / cosine.
        symmetric: also fit the backward map and average directions (module docstring). Default off.
        alphas: ridge grid (relative to ``trace(Xc^T Xc) / Ds``), default :data:`DEFAULT_ALPHAS`.
        svd_variant: ``"rrr"`` (reduced-rank ridge, default) or ``"procrustes"``.
        rank_tol: ``svd`` keeps the smallest rank whose held-out R^2 is within this of the best.
        mlp_hidden, mlp_epochs, mlp_patience, mlp_warmup, mlp_lr, mlp_batch_size: MLP size and training
            (early stopping counts ``mlp_patience`` epochs without held-out gain, after ``mlp_warmup``).

    Returns:
        An :class:`Alignment`. Computation runs on the inputs' device (float64 for the linear maps).

    Example:
        >>> align = fit_alignment(src_feats, tgt_feats, method="auto", seed=0)
        >>> align.method, align.r2, align.scores
    """
    x = _as_matrix(x_source, "x_source")
    y = _as_matrix(y_target, "y_target")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x_source has {x.shape[0]} anchors but y_target has {y.shape[0]}; pass the features of the same "
            "anchor prompts, in the same order, from the source model and the target encoder."
        )
    if method != "auto" and method not in ALIGNMENT_METHODS:
        raise ValueError(f"Unknown alignment method {method!r}; use one of {ALIGNMENT_METHODS} or 'auto'.")
    if svd_variant not in SVD_VARIANTS:
        raise ValueError(f"Unknown svd_variant {svd_variant!r}; use one of {SVD_VARIANTS}.")
    options = _Options(
        alphas=tuple(alphas) if alphas is not None else DEFAULT_ALPHAS,
        svd_variant=svd_variant,
        rank_tol=rank_tol,
        mlp_hidden=mlp_hidden,
        mlp_epochs=mlp_epochs,
        mlp_patience=mlp_patience,
        mlp_warmup=mlp_warmup,
        mlp_lr=mlp_lr,
        mlp_batch_size=mlp_batch_size,
    )
    if not options.alphas or any(not (a > 0 and math.isfinite(a)) for a in options.alphas):
        raise ValueError(f"alphas must be positive finite numbers, got {options.alphas}.")
    train, held = _split(x.shape[0], holdout, seed)
    methods = list(_AUTO_ORDER) if method == "auto" else [method]
    x, y = x.double(), y.double()
    alpha = _choose_alpha(x[train], y[train], x[held], y[held], options.alphas)
    fits = {name: _fit_one(x, y, train, held, name, options, seed, alpha) for name in methods}
    chosen = methods[0]
    for name in methods[1:]:
        if fits[name].r2 > fits[chosen].r2 + _TIE:
            chosen = name
    best = fits[chosen]
    backward_fit = None
    if symmetric:
        back_alpha = _choose_alpha(y[train], x[train], y[held], x[held], options.alphas)
        backward_fit = _fit_one(y, x, train, held, chosen, options, seed, back_alpha)
    params = dict(best.params)
    if method == "auto":
        params["selected_by"] = "heldout_r2"
    return Alignment(
        method=chosen,
        params=params,
        r2=best.r2,
        cosine=best.cosine,
        n_anchors=x.shape[0],
        n_holdout=len(held),
        source_dim=x.shape[1],
        target_dim=y.shape[1],
        seed=seed,
        holdout=holdout,
        scores={name: fit.r2 for name, fit in fits.items()},
        symmetric=symmetric,
        backward_r2=None if backward_fit is None else backward_fit.r2,
        _forward=best.map,
        _backward=None if backward_fit is None else backward_fit.map,
    )


@dataclass
class _Options:
    alphas: tuple[float, ...]
    svd_variant: str
    rank_tol: float
    mlp_hidden: int
    mlp_epochs: int
    mlp_patience: int
    mlp_warmup: int
    mlp_lr: float
    mlp_batch_size: int


@dataclass
class _Fit:
    map: object
    r2: float
    cosine: float
    params: dict


def _fit_one(x, y, train, held, method, options, seed, alpha_choice) -> _Fit:
    xt, yt, xh, yh = x[train], y[train], x[held], y[held]
    alpha, alpha_r2 = alpha_choice
    if method == "ridge":
        split_map = _LinearMap(*_ridge(xt, yt, alpha))
        weight, x_mean, y_mean = _ridge(x, y, alpha)
        params = {
            "alpha": alpha,
            "lambda": _lambda(x - x_mean, alpha),
            "alpha_grid": list(options.alphas),
            "alpha_grid_r2": [round(v, 6) for v in alpha_r2],
        }
        final = _LinearMap(weight, x_mean, y_mean)
    elif method == "svd":
        split_map, rank, curve = _reduced_rank(xt, yt, xh, yh, alpha, options)
        final = _reduced_rank(x, y, None, None, alpha, options, rank=rank)[0]
        params = {
            "variant": options.svd_variant,
            "rank": rank,
            "max_rank": len(curve),
            "alpha": alpha,
            "lambda": _lambda(x - x.mean(0), alpha),
            "rank_tol": options.rank_tol,
            "heldout_r2_full_rank": round(curve[-1], 6),
        }
    else:
        final, params = _fit_mlp(xt, yt, xh, yh, alpha, options, seed)
        split_map = final
    r2, cosine = _heldout_stats(split_map, xh, yh, yt.mean(0))
    return _Fit(final, r2, cosine, params)


def _split(n: int, holdout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}.")
    n_held = round(holdout * n)
    if n_held < 2 or n - n_held < 2:
        raise ValueError(
            f"Too few anchors for the held-out split: {n} anchors with holdout={holdout} leaves {n - n_held} "
            f"to fit and {n_held} to validate (need at least 2 each). Use more anchor prompts (hundreds to "
            "thousands are typical) or change holdout."
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return order[n_held:].sort().values, order[:n_held].sort().values


def _lambda(xc: torch.Tensor, alpha: float) -> float:
    return alpha * float((xc * xc).sum()) / xc.shape[1]


def _ridge(x, y, alpha):
    """Closed-form ridge on centred data: ``(W [Ds, Dt], x_mean, y_mean)``, primal or dual by shape."""
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    lam = _lambda(xc, alpha)
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


def _choose_alpha(xt, yt, xh, yh, alphas) -> tuple[float, list[float]]:
    """Held-out R^2 of ridge for every alpha, from one eigendecomposition; returns the best alpha."""
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


def _reduced_rank(xt, yt, xh, yh, alpha, options, rank: int | None = None):
    """Fit the ``svd`` map on (xt, yt); with held-out data, choose the rank. Returns (map, rank, curve)."""
    x_mean, y_mean = xt.mean(0), yt.mean(0)
    xc, yc = xt - x_mean, yt - y_mean
    if options.svd_variant == "rrr":
        ridge_weight = _ridge(xt, yt, alpha)[0]
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
    return _LinearMap(weight, x_mean, y_mean), rank, curve


def _fit_mlp(xt, yt, xh, yh, alpha, options, seed):
    device = xt.device
    x_mean, y_mean = xt.mean(0), yt.mean(0)
    x_scale = xt.std(0, correction=0)
    x_scale = torch.where(x_scale > 1e-8 * x_scale.max(), x_scale, x_scale.max()).clamp_min(1e-12)
    y_scale = float((yt - y_mean).pow(2).mean().sqrt()) or 1.0  # one scalar: MSE tracks the pooled R^2
    zt, zh = (xt - x_mean) / x_scale, (xh - x_mean) / x_scale
    tt, th = (yt - y_mean) / y_scale, (yh - y_mean) / y_scale
    skip_weight = _ridge(zt, tt, alpha)[0]
    # The residual path learns what ridge misses. Its targets are scaled to unit RMS: Adam's steps have a
    # fixed size, and a small residual would otherwise be overshot from the first step.
    residual_scale = float((tt - zt @ skip_weight).pow(2).mean().sqrt()) or 1.0
    zt, zh, tt, th = zt.float(), zh.float(), tt.float(), th.float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _MLP(xt.shape[1], yt.shape[1], options.mlp_hidden)
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
    mlp_map = _MLPMap(net, x_mean.float(), x_scale.float(), y_mean.float(), torch.tensor(y_scale).to(device))
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


def _heldout_stats(fitted, xh, yh, y_mean) -> tuple[float, float]:
    predicted = fitted.predict(xh).double()
    yh = yh.double()
    total = float(((yh - yh.mean(0)) ** 2).sum())
    r2 = 1.0 - float(((yh - predicted) ** 2).sum()) / max(total, 1e-300)
    cosine = torch.nn.functional.cosine_similarity(predicted - y_mean, yh - y_mean, dim=-1)
    return r2, float(cosine.mean())


# ---------------------------------------------------------------------- calibration, gate, centre
def calibrate(
    vector: torch.Tensor,
    anchor_states: torch.Tensor,
    statistic: str = "token_std",
    *,
    mask: torch.Tensor | None = None,
    factor: float | None = None,
) -> tuple[torch.Tensor, dict]:
    """Scale a target-space direction so that ``strength=1`` is one unit of a benign statistic.

    - ``"token_std"`` (default): the standard deviation (population, ``correction=0``) of the benign
      token states projected on the unit direction. Steering adds ``strength * v`` to every token, so this
      measures the push against how much benign text naturally varies *along that direction*: it ignores
      the target's overall scale and anisotropy (e.g. T5's outlier dimensions), and does not depend on the
      length of the transported vector (map scale errors cancel).
    - ``"mean_norm"``: the mean L2 norm of the benign token states times ``factor`` (default
      ``1 / sqrt(D)``, which makes it equal the token std for isotropic zero-mean states; a fixed share of
      the typical state size, whatever the direction).

    Args:
        vector: ``[D]`` direction (only its orientation is used).
        anchor_states: benign target states: ``[N, D]`` (token states or pooled features) or ``[B, T, D]``.
        statistic: ``"token_std"`` or ``"mean_norm"``.
        mask: ``[B, T]`` bool real tokens for ``[B, T, D]`` states (``None`` = every position).
        factor: multiplier of ``"mean_norm"`` (default ``1 / sqrt(D)``).

    Returns:
        ``(vector, stats)``: the calibrated ``[D]`` float32 vector ``unit(vector) * scale`` and a JSON-ready
        dict (``statistic``, ``scale``, ``input_norm``, ``n_states``, projection mean/std, ``mean_norm``,
        ``factor``).

    Example:
        >>> v, stats = calibrate(align.transport(d), token_states, mask=attention_mask.bool())
        >>> stats["scale"] == float(v.norm())
    """
    if statistic not in CALIBRATION_STATISTICS:
        raise ValueError(f"Unknown calibration statistic {statistic!r}; use one of {CALIBRATION_STATISTICS}.")
    direction = _as_vector(vector, "vector")
    states = _token_rows(anchor_states, mask, direction.shape[0])
    norm = float(direction.norm())
    if norm == 0.0:
        raise ValueError("calibrate: the vector is all zeros and has no direction; check the transport.")
    unit = direction / norm
    projections = states @ unit
    std = float(projections.std(correction=0))
    mean_norm = float(states.norm(dim=-1).mean())
    factor = 1.0 / math.sqrt(states.shape[1]) if factor is None else float(factor)
    scale = std if statistic == "token_std" else mean_norm * factor
    if not scale > 0.0 or not math.isfinite(scale):
        raise ValueError(
            f"calibrate: the {statistic} statistic of the anchor states is {scale}; the benign states do not "
            "vary along this direction. Check that the anchors are real target-encoder states."
        )
    stats = {
        "statistic": statistic,
        "scale": scale,
        "input_norm": norm,
        "n_states": int(states.shape[0]),
        "projection_mean": float(projections.mean()),
        "projection_std": std,
        "mean_norm": mean_norm,
        "factor": factor if statistic == "mean_norm" else None,
    }
    return (unit * scale).float(), stats


def gate_thresholds(anchor_scores: torch.Tensor, quantile: float = 0.99) -> torch.Tensor:
    """Gate thresholds from benign anchors only: the ``quantile`` of each direction's anchor scores.

    A score is ``-(mean-pooled state . unit(v))`` as computed by :func:`safesteer_diffusers.steering.maths.gate_scores`
    (use :func:`anchor_gate_scores`); a prompt fires a direction when its score exceeds the threshold, so at
    most ``1 - quantile`` of benign anchors fire. Pool anchors exactly as inference does: with the default
    ``tokens="all"``, over every position the pipeline's encoder returns (padding included).

    Args:
        anchor_scores: ``[N]`` or ``[N, K]`` benign scores (K directions).
        quantile: in ``(0, 1]``; linear interpolation between order statistics (``torch.quantile``).

    Returns:
        ``[K]`` float32 thresholds (``[]`` for 1-D input).

    Example:
        >>> scores = anchor_gate_scores(states, torch.stack([v_global, v_sexual]), mask)
        >>> gate_thresholds(scores, 0.99)
    """
    scores = torch.as_tensor(anchor_scores)
    if scores.dim() not in (1, 2) or scores.shape[0] == 0:
        raise ValueError(f"anchor_scores must be [N] or [N, K] with N >= 1, got shape {tuple(scores.shape)}.")
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}.")
    scores = scores.detach().to("cpu", torch.float64)
    if not torch.isfinite(scores).all():
        raise ValueError("anchor_scores contain NaN or infinite values; check the anchor states.")
    return torch.quantile(scores, quantile, dim=0).float()


def anchor_gate_scores(
    anchor_states: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Benign gate scores ``[B, K]``: :func:`safesteer_diffusers.steering.maths.gate_scores`, the inference definition.

    Args:
        anchor_states: ``[B, T, D]`` target text states of benign anchors.
        vectors: ``[K, D]`` (or ``[D]``) directions.
        mask: ``[B, T]`` positions pooled (``None`` = all, as inference with ``tokens="all"``).

    Example:
        >>> gate_thresholds(anchor_gate_scores(states, vectors), quantile=0.99)
    """
    if anchor_states.dim() != 3:
        raise ValueError(f"anchor_states must be [B, T, D], got shape {tuple(anchor_states.shape)}.")
    vectors = vectors.unsqueeze(0) if vectors.dim() == 1 else vectors
    return gate_scores(anchor_states, vectors.to(anchor_states.device), mask)


def benign_center(anchor_states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean benign token state ``[D]`` (float32, CPU): the centre of the projection steering mode.

    Args:
        anchor_states: ``[N, D]`` token states or ``[B, T, D]``.
        mask: ``[B, T]`` bool real tokens for 3-D states (``None`` = every position).

    Example:
        >>> center = benign_center(token_states, attention_mask.bool())
    """
    states = _token_rows(anchor_states, mask, None)
    return states.mean(0).float()


# ---------------------------------------------------------------------- helpers
def _as_matrix(value: object, label: str, allow_1d: bool = False) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            import numpy as np

            if isinstance(value, np.ndarray):
                value = torch.from_numpy(value)
        except ImportError:  # pragma: no cover - numpy ships with torch
            pass
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{label}: expected a torch.Tensor or numpy array, got {type(value).__name__}.")
    if value.dim() != 2 and not (allow_1d and value.dim() == 1):
        raise ValueError(f"{label}: expected a 2-D [N, D] tensor, got shape {tuple(value.shape)}.")
    if not value.is_floating_point():
        raise TypeError(f"{label}: expected floating-point features, got {value.dtype}.")
    if not torch.isfinite(value).all():
        bad = int((~torch.isfinite(value)).reshape(-1, value.shape[-1]).any(dim=1).sum())
        raise ValueError(
            f"{label}: {bad} rows contain NaN or infinite values; recompute those features (fp16 overflow?) "
            "or drop those anchors from both sides."
        )
    return value.detach()


def _as_vector(value: object, label: str) -> torch.Tensor:
    vector = _as_matrix(value, label, allow_1d=True)
    if vector.dim() != 1:
        raise ValueError(f"{label}: expected a 1-D [D] vector, got shape {tuple(vector.shape)}.")
    return vector.to("cpu", torch.float64)


def _token_rows(states: object, mask: torch.Tensor | None, dim: int | None) -> torch.Tensor:
    """Benign states as ``[M, D]`` float64 rows (real tokens only when a mask is given)."""
    if not isinstance(states, torch.Tensor) or not states.is_floating_point():
        raise TypeError("anchor_states must be a floating-point torch.Tensor [N, D] or [B, T, D].")
    if states.dim() == 3:
        if mask is not None:
            if mask.shape != states.shape[:2]:
                raise ValueError(
                    f"mask has shape {tuple(mask.shape)} but anchor_states is {tuple(states.shape)}; "
                    "pass the [B, T] attention mask of those states."
                )
            states = states[mask.to(device=states.device, dtype=torch.bool)]
        else:
            states = states.reshape(-1, states.shape[-1])
    elif states.dim() != 2 or mask is not None:
        raise ValueError(
            f"anchor_states must be [N, D], or [B, T, D] with an optional [B, T] mask; got shape "
            f"{tuple(states.shape)}{' with a mask' if mask is not None else ''}."
        )
    if dim is not None and states.shape[-1] != dim:
        raise ValueError(f"The vector has {dim} features but the anchor states have {states.shape[-1]}.")
    if states.shape[0] == 0:
        raise ValueError("No anchor states (the mask selects no token).")
    states = states.detach().to("cpu", torch.float64)
    if not torch.isfinite(states).all():
        raise ValueError("anchor_states contain NaN or infinite values; recompute them (fp16 overflow?).")
    return states


def _unit(v: torch.Tensor) -> torch.Tensor:
    norms = v.norm(dim=-1, keepdim=True)
    return torch.where(norms > 0, v / norms.clamp_min(1e-30), torch.zeros_like(v))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value
