"""Benign-only alignment of a source space to a target text space, and transport through it.

Owns :func:`fit_alignment` (held-out split, choice among the maps, the optional backward map) and its result,
:class:`Alignment` (:meth:`~Alignment.transport`, :meth:`~Alignment.predict`, the metadata summary). The maps'
arithmetic (ridge, reduced-rank / Procrustes ``svd``, ``mlp``) is in
:mod:`safesteer_diffusers.build.alignment_maps`; what is measured on benign target states afterwards (vector
length, gate thresholds, centre) is in :mod:`safesteer_diffusers.build.calibration`.

The same benign anchor prompts go through the source model and the target's text encoder, giving paired
features ``X [N, Ds]`` and ``Y [N, Dt]``. :func:`fit_alignment` fits a map ``Y ~ f(X)`` on them (the target
side never sees unsafe text) and :meth:`Alignment.transport` carries a direction through the map's linear
part: a direction is a displacement, so no bias, and the forward map is used (``d_t = W^T d_s``), never its
pseudo-inverse, which would be wrong for a displacement (docs/method.md, section 3).

Conventions: maps act on rows, ``Y ~ (X - x_mean) @ W + y_mean`` with ``W [Ds, Dt]``; ``transport(v) = v @ W``.

Maps (hyperparameters chosen on a held-out split of the anchors, deterministic under ``seed``; details in
:mod:`~safesteer_diffusers.build.alignment_maps`):

- ``"ridge"``: closed-form ridge regression on centred features, ``alpha`` chosen by held-out pooled R^2 on
  a log grid, then refit on all anchors (primal or dual form by shape).
- ``"svd"``: reduced-rank ridge regression (``variant="rrr"``, default), the best rank-``k`` map in the
  ridge metric, ``k`` chosen on the held-out split (the smallest rank within ``rank_tol`` of the best
  held-out R^2; ``k = min(Ds, Dt)`` equals ridge); or ``variant="procrustes"``, a scaled semi-orthogonal
  map from the SVD of the cross-covariance, also with ``k`` chosen on held-out.
- ``"mlp"``: the ridge map (fixed) plus a learned one-hidden-layer residual that starts at zero, trained
  with early stopping on held-out MSE, so it never ends worse than ridge on held-out anchors.
  ``transport(v)`` is the Jacobian at the anchor mean applied to ``v`` (``torch.func.jvp``).

``symmetric=True`` also fits the backward map (target -> source, same method) and returns
``|F v| * unit(unit(F v) + unit(B^T v))``: the average of the unit forward transport and the unit image of
``v`` under the transpose of the backward map's linear part, with the forward magnitude. Between two real
sentence encoders it raised the transported direction's unsafe-vs-safe AUROC slightly, in both directions
(ridge vs "ridge, symmetric" in docs/method.md, section 6.1); it doubles the fitting cost.

Example::

    align = fit_alignment(source_anchor_feats, target_anchor_feats, method="auto")
    v_target = align.transport(estimate.global_direction)
    vector, stats = calibrate(v_target, benign_token_states, mask=benign_mask)  # build.calibration
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from safesteer_diffusers.packs.recipe import ALIGNMENT_METHODS

from .alignment_maps import (
    DEFAULT_ALPHAS,
    LinearMap,
    MapOptions,
    choose_alpha,
    fit_mlp,
    reduced_rank,
    ridge,
    ridge_lambda,
)

SVD_VARIANTS = ("rrr", "procrustes")
_AUTO_ORDER = ("ridge", "svd", "mlp")  # tie-break for method="auto": the simpler map wins equal scores
_TIE = 1e-9


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

        Args:
            vector: ``[Ds]`` or ``[K, Ds]`` source directions.

        Returns:
            ``[Dt]`` (or ``[K, Dt]``) float32 on CPU.

        Example:
            >>> align.transport(estimate.global_direction)
        """
        v = as_matrix(vector, "vector", allow_1d=True)
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
        """Predicted target features of source features (forward map, with bias).

        Args:
            x: ``[N, Ds]`` (or ``[Ds]``) source features.

        Returns:
            ``[N, Dt]`` (or ``[Dt]``) float32 on CPU.
        """
        x = as_matrix(x, "x", allow_1d=True)
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
    x = as_matrix(x_source, "x_source")
    y = as_matrix(y_target, "y_target")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x_source has {x.shape[0]} anchors but y_target has {y.shape[0]}; pass the features of the same "
            "anchor prompts, in the same order, from the source model and the target encoder."
        )
    if method != "auto" and method not in ALIGNMENT_METHODS:
        raise ValueError(f"Unknown alignment method {method!r}; use one of {ALIGNMENT_METHODS} or 'auto'.")
    if svd_variant not in SVD_VARIANTS:
        raise ValueError(f"Unknown svd_variant {svd_variant!r}; use one of {SVD_VARIANTS}.")
    options = MapOptions(
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
    alpha = choose_alpha(x[train], y[train], x[held], y[held], options.alphas)
    fits = {name: _fit_one(x, y, train, held, name, options, seed, alpha) for name in methods}
    chosen = methods[0]
    for name in methods[1:]:
        if fits[name].r2 > fits[chosen].r2 + _TIE:
            chosen = name
    best = fits[chosen]
    backward_fit = None
    if symmetric:
        back_alpha = choose_alpha(y[train], x[train], y[held], x[held], options.alphas)
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
class _Fit:
    map: object
    r2: float
    cosine: float
    params: dict


def _fit_one(x, y, train, held, method, options, seed, alpha_choice) -> _Fit:
    xt, yt, xh, yh = x[train], y[train], x[held], y[held]
    alpha, alpha_r2 = alpha_choice
    if method == "ridge":
        split_map = LinearMap(*ridge(xt, yt, alpha))
        weight, x_mean, y_mean = ridge(x, y, alpha)
        params = {
            "alpha": alpha,
            "lambda": ridge_lambda(x - x_mean, alpha),
            "alpha_grid": list(options.alphas),
            "alpha_grid_r2": [round(v, 6) for v in alpha_r2],
        }
        final = LinearMap(weight, x_mean, y_mean)
    elif method == "svd":
        split_map, rank, curve = reduced_rank(xt, yt, xh, yh, alpha, options)
        final = reduced_rank(x, y, None, None, alpha, options, rank=rank)[0]
        params = {
            "variant": options.svd_variant,
            "rank": rank,
            "max_rank": len(curve),
            "alpha": alpha,
            "lambda": ridge_lambda(x - x.mean(0), alpha),
            "rank_tol": options.rank_tol,
            "heldout_r2_full_rank": round(curve[-1], 6),
        }
    else:
        final, params = fit_mlp(xt, yt, xh, yh, alpha, options, seed)
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


def _heldout_stats(fitted, xh, yh, y_mean) -> tuple[float, float]:
    predicted = fitted.predict(xh).double()
    yh = yh.double()
    total = float(((yh - yh.mean(0)) ** 2).sum())
    r2 = 1.0 - float(((yh - predicted) ** 2).sum()) / max(total, 1e-300)
    cosine = torch.nn.functional.cosine_similarity(predicted - y_mean, yh - y_mean, dim=-1)
    return r2, float(cosine.mean())


# ---------------------------------------------------------------------- helpers
def as_matrix(value: object, label: str, allow_1d: bool = False) -> torch.Tensor:
    """Features as a detached tensor, checked: 2-D (or 1-D when allowed), floating point, finite.

    Shared with :mod:`safesteer_diffusers.build.calibration`, so that both report bad input the same way.

    Args:
        value: a torch tensor or numpy array.
        label: the argument's name, for error messages.
        allow_1d: also accept a ``[D]`` vector.

    Returns:
        The tensor, detached (same dtype and device).

    Raises:
        TypeError: not a tensor / array, or not floating point.
        ValueError: wrong shape, or NaN / infinite rows.
    """
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
