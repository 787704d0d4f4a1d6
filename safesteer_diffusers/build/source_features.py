"""Running the source language model: pooled hidden states of prompts, every layer in one pass.

Owns the model side of direction estimation: batched forward passes with ``output_hidden_states=True``,
pooled over the real tokens (attention mask) by ``"mean"`` or ``"last"`` (:func:`extract_features`,
:func:`extract_all_layers`), with the padding and position ids that make a padded prompt give the same states
as the prompt alone. Causal LMs run without their LM head, encoder-decoder models (T5) run their encoder only.
With ``chat_template=True`` each prompt is first written as one user turn of the tokenizer's chat template
(:func:`apply_chat_template`), as an instruct model sees a request.
:func:`estimate_from_model` chains one pass with :func:`~safesteer_diffusers.build.directions.estimate_directions`;
the maths itself lives in :mod:`safesteer_diffusers.build.directions`.

Example::

    data = ContrastPrompts.from_pairs([("a calm street", "a street riot with injuries", "violence"), ...])
    estimate = estimate_from_model(model, tokenizer, data, layer="auto", pooling="mean")
    estimate.global_direction, estimate.layer, estimate.auroc["violence"]
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from safesteer_diffusers.packs.recipe import POOLINGS

from .contrast import ContrastPrompts
from .directions import DirectionEstimate, estimate_directions


# ---------------------------------------------------------------------- model running
def extract_features(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    layer: int,
    pooling: str = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    progress: bool = True,
    chat_template: bool = False,
) -> torch.Tensor:
    """Pooled hidden states of one layer, ``[N, D]`` float32 on CPU.

    Args:
        model: a ``transformers`` model: causal LM (run without its LM head), encoder (``BertModel``), or
            encoder-decoder (only ``model.get_encoder()`` runs).
        tokenizer: its tokenizer. Its ``padding_side`` is respected; padding uses its pad id (or 0 when it
            has none, which is harmless: pad positions are masked).
        prompts: the texts, tokenized as they are (with the tokenizer's special tokens), unless
            ``chat_template``.
        layer: index into ``hidden_states`` (0 = embeddings, ``-1`` = last layer).
        pooling: ``"mean"`` over real tokens (attention mask, special tokens included) or ``"last"`` real
            token.
        batch_size: prompts per forward pass. Prompts are grouped by length to save padding; the output
            is in input order and does not depend on the batching beyond float rounding.
        max_length: truncate prompts to this many tokens (``None``: no truncation; with ``chat_template``,
            the templated text is truncated).
        progress: show a tqdm progress bar.
        chat_template: write each prompt as one user turn of the tokenizer's chat template, generation
            prompt included (:func:`apply_chat_template`), and tokenize that text without adding special
            tokens (the template writes its own). Pooling then covers the whole templated text (``"mean"``:
            system preamble, role markers and generation prompt included) or reads its ``"last"`` token, the
            end of the generation prompt, where an instruct model starts its answer.

    Returns:
        ``[N, D]`` float32 CPU tensor.

    Example:
        >>> feats = extract_features(model, tokenizer, ["a cat on a mat"], layer=-8, pooling="last")
    """
    return extract_all_layers(
        model,
        tokenizer,
        prompts,
        pooling=pooling,
        batch_size=batch_size,
        max_length=max_length,
        progress=progress,
        layers=[layer],
        chat_template=chat_template,
    )[0]


def extract_all_layers(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    pooling: str = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    progress: bool = True,
    layers: Sequence[int] | None = None,
    chat_template: bool = False,
) -> torch.Tensor:
    """Pooled hidden states of every layer in one pass, ``[L+1, N, D]`` float32 on CPU.

    Same arguments as :func:`extract_features`; ``layers`` keeps only the listed ``hidden_states``
    indices (output ``[len(layers), N, D]`` in that order) to save memory with large models.

    The model runs in eval mode under ``torch.no_grad()`` (its training flag is restored afterwards).
    With left padding, position ids are passed from the attention mask (when the model accepts them) so a
    padded prompt gets the same states as the prompt alone.

    Returns:
        ``[L+1, N, D]`` (or ``[len(layers), N, D]``) float32 CPU tensor; index 0 = embeddings.

    Example:
        >>> feats = extract_all_layers(model, tokenizer, data.prompts)  # then estimate_directions(data, feats)
    """
    return _extract(
        model, tokenizer, prompts, pooling, batch_size, max_length, progress, layers, chat_template
    )[0]


def apply_chat_template(tokenizer, prompts: Sequence[str]) -> list[str]:
    """Each prompt as one user turn of the tokenizer's chat template, with the generation prompt.

    ``tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
    add_generation_prompt=True)`` for every prompt: the text an instruct model reads before it answers (a
    template may add a default system turn). Tokenize the result with ``add_special_tokens=False``, as
    transformers does for chat input: the template already holds the special tokens.

    Args:
        tokenizer: a tokenizer with a chat template (``tokenizer.chat_template`` set).
        prompts: the prompts.

    Returns:
        The templated texts, in order.

    Raises:
        ValueError: the tokenizer has no chat template.

    Example:
        >>> apply_chat_template(tokenizer, ["a red fox"])
        ['<|im_start|>user\\na red fox<|im_end|>\\n<|im_start|>assistant\\n']
    """
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ValueError(
            f"The source tokenizer ({name}) has no chat template (tokenizer.chat_template is not set), so "
            "prompts cannot be formatted as chat turns. Use an instruct model's tokenizer, set "
            "tokenizer.chat_template, or build without --source-chat-template (chat_template=False)."
        )
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        for prompt in prompts
    ]


def _extract(model, tokenizer, prompts, pooling, batch_size, max_length, progress, layers, chat_template):
    """Features ``[len(indices), N, D]`` and the non-negative hidden-state indices they come from."""
    from tqdm.auto import tqdm

    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; use one of {POOLINGS}.")
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, got one string; wrap it in a list.")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("No prompts given.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    module = _feature_module(model)
    accepted = _forward_parameters(module)
    if "input_ids" not in accepted:
        raise TypeError(f"{type(module).__name__}.forward does not take input_ids; pass a text model.")
    device = _module_device(module)
    side = getattr(tokenizer, "padding_side", "right")
    if side not in ("left", "right"):
        raise ValueError(f"tokenizer.padding_side must be 'left' or 'right', got {side!r}.")
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)

    if chat_template:
        prompts = apply_chat_template(tokenizer, prompts)
    # Tokenize unpadded and pad here: works for tokenizers without a pad token, and lets us sort by length.
    encoded = tokenizer(
        prompts,
        padding=False,
        truncation=max_length is not None,
        max_length=max_length,
        add_special_tokens=not chat_template,  # a chat template writes its own BOS / role markers
    )
    ids = [list(row) for row in encoded["input_ids"]]
    types = [list(row) for row in encoded["token_type_ids"]] if "token_type_ids" in encoded else None
    empty = [prompts[i] for i, row in enumerate(ids) if not row]
    if empty:
        raise ValueError(f"{len(empty)} prompts tokenize to no tokens (e.g. {empty[0]!r}); remove them.")
    order = sorted(range(len(prompts)), key=lambda i: -len(ids[i]))  # stable: ties keep input order

    pooled: list[list[torch.Tensor]] = []
    indices: list[int] = []
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            batches = range(0, len(order), batch_size)
            for start in tqdm(batches, desc="features", unit="batch", disable=not progress):
                rows = order[start : start + batch_size]
                input_ids, mask = _pad([ids[i] for i in rows], pad_id, side, device)
                inputs = {"input_ids": input_ids}
                if "attention_mask" in accepted:
                    inputs["attention_mask"] = mask.long()
                if types is not None and "token_type_ids" in accepted:
                    inputs["token_type_ids"] = _pad([types[i] for i in rows], 0, side, device)[0]
                if side == "left" and "position_ids" in accepted:
                    inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp_min(0)
                if "use_cache" in accepted:
                    inputs["use_cache"] = False
                outputs = module(**inputs, output_hidden_states=True, return_dict=True)
                hidden_states = getattr(outputs, "hidden_states", None)
                if hidden_states is None:
                    raise TypeError(
                        f"{type(module).__name__} returned no hidden_states for output_hidden_states=True; "
                        "pass a transformers text model."
                    )
                if not indices:
                    indices = _layer_indices(layers, len(hidden_states))
                    pooled = [[] for _ in indices]
                for slot, index in enumerate(indices):
                    pooled[slot].append(_pool(hidden_states[index], mask, pooling).cpu())
    finally:
        module.train(was_training)
    stacked = torch.stack([torch.cat(chunks) for chunks in pooled])  # [L, N, D] in sorted order
    result = torch.empty_like(stacked)
    result[:, torch.tensor(order)] = stacked
    return result, indices


def estimate_from_model(
    model: torch.nn.Module,
    tokenizer,
    data: ContrastPrompts | Sequence[tuple[str, str, str]],
    *,
    layer: int | str | None = "auto",
    layers: Sequence[int] | None = None,
    pooling: str = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    holdout: float = 0.3,
    seed: int = 0,
    progress: bool = True,
    chat_template: bool = False,
) -> DirectionEstimate:
    """:func:`extract_all_layers` then :func:`estimate_directions`: one forward pass over the prompts.

    Args:
        layer: ``"auto"`` to choose among ``layers`` (default: every hidden-state index), or one layer.
        Others: as in :func:`extract_all_layers` and :func:`estimate_directions`.

    Returns:
        A :class:`DirectionEstimate` with ``pooling`` set and non-negative layer indices.

    Example:
        >>> est = estimate_from_model(llm, tok, pairs, layers=range(8, 24), pooling="last")
    """
    if not isinstance(data, ContrastPrompts):
        data = ContrastPrompts.from_pairs(data)
    auto = layer is None or layer == "auto"
    wanted = None if (auto and layers is None) else list(layers) if auto else [layer]
    feats, indices = _extract(
        model, tokenizer, data.prompts, pooling, batch_size, max_length, progress, wanted, chat_template
    )
    if len(set(indices)) != len(indices):
        raise ValueError(f"Layers {wanted} name the same hidden state twice.")
    by_layer = dict(zip(indices, feats, strict=True))
    estimate = estimate_directions(data, by_layer, layer="auto", holdout=holdout, seed=seed)
    estimate.pooling = pooling
    return estimate


def _feature_module(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose hidden states we read: the encoder of encoder-decoders, else the base model."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (a transformers model), got {type(model).__name__}."
        )
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        return model.get_encoder()
    # A causal LM's base model gives the same hidden states without computing [B, T, vocab] logits.
    base = getattr(model, "base_model", None)
    return base if isinstance(base, torch.nn.Module) else model


def _forward_parameters(module: torch.nn.Module) -> set[str]:
    return set(inspect.signature(module.forward).parameters)


def _module_device(module: torch.nn.Module) -> torch.device:
    for parameter in module.parameters():
        return parameter.device
    return torch.device("cpu")


def _pad(rows: list[list[int]], fill: int, side: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T]`` padded ids and the ``[B, T]`` bool mask of real tokens."""
    length = max(len(row) for row in rows)
    values = torch.full((len(rows), length), fill, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for r, row in enumerate(rows):
        span = slice(length - len(row), length) if side == "left" else slice(0, len(row))
        values[r, span] = torch.tensor(row, dtype=torch.long)
        mask[r, span] = True
    return values.to(device), mask.to(device)


def _layer_indices(layers: Sequence[int] | None, n_states: int) -> list[int]:
    if layers is None:
        return list(range(n_states))
    out = []
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise TypeError(f"Layers must be ints, got {layer!r}.")
        if not -n_states <= layer < n_states:
            raise ValueError(
                f"Layer {layer} is out of range: the model returns {n_states} hidden states (0 = embeddings, "
                f"{n_states - 1} = last layer; negative indices count from the end)."
            )
        out.append(layer % n_states)
    return out


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    hidden = hidden.float()
    if pooling == "last":
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = torch.where(mask, positions, -1).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    # torch.where, not a product: padded positions may hold NaN (fully masked attention rows).
    summed = torch.where(mask.unsqueeze(-1), hidden, 0.0).sum(dim=1)
    return summed / mask.sum(dim=1, keepdim=True).to(hidden.dtype)
