"""Per-layer steering: wrappers around a UNet's cross-attention (attn2) processors, and keeping them installed.

The offsets are computed when the prompt is encoded; a wrapper adds them to the text input of its layer and
then calls the original processor, which it keeps as ``base_processor`` (the same object, put back on
uninstall). diffusers replaces processors in ordinary calls (``enable_attention_slicing()``,
``fuse_qkv_projections()``, ``set_attn_processor(...)``, another pipeline sharing the UNet being unwrapped), so
:class:`AttentionPatch` checks at the start of every call that each selected layer still runs through its
wrapper, and wraps the new processor if not: steering never silently runs without its layers.

``torch.compile``: a wrapper is part of the denoiser's graph. It asks its offset source for two tensors and adds
them with ``torch.where``; the source reads them from a thread-local slot filled by the denoiser's pre-hook
(:mod:`.call_state`), so the compiled graph takes the offsets as inputs: per-layer steering adds no graph break,
and changing the configuration never recompiles (``tests/pipelines/test_compile.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch

OffsetSource = Callable[[int, str], "tuple[torch.Tensor, torch.Tensor] | None"]


class CrossAttentionSteering(torch.nn.Module):
    """Wraps one cross-attention processor: adds the steering offset to its text input, then delegates.

    The original processor is kept as ``base_processor`` (a submodule when it is one, so IP-Adapter
    weights stay in the module tree for ``.to()`` and CPU offload). The wrapper presents the original's
    call signature, so diffusers passes it the same ``cross_attention_kwargs`` as before.

    Args:
        base_processor: the processor to wrap.
        offsets: ``(rows, layer) -> (delta [rows, T, D], positions [rows, T]) or None``: the current denoiser
            step's offsets for a text input of ``rows`` rows at this layer (``None``: add nothing). Called inside
            the denoiser's forward (inside its compiled graph, if any): it must branch on shapes only.
        layer: the layer's module name (for messages and reports).
        owner: the object that installed the wrapper (an uninstall removes only its own wrappers).
    """

    def __init__(self, base_processor: Any, offsets: OffsetSource, layer: str, owner: object):
        super().__init__()
        self.base_processor = base_processor
        self.layer = layer
        object.__setattr__(self, "_offsets", offsets)
        object.__setattr__(self, "owner", owner)
        call = functools.update_wrapper(
            lambda *a, **k: torch.nn.Module.__call__(self, *a, **k), base_processor.__call__
        )
        # diffusers' Attention.forward filters kwargs by inspect.signature(processor.__call__).
        object.__setattr__(self, "__call__", call)

    def forward(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if encoder_hidden_states is not None:
            encoder_hidden_states = self._steer(encoder_hidden_states)
        return self.base_processor(attn, hidden_states, encoder_hidden_states, *args, **kwargs)

    def _steer(self, text: Any) -> Any:
        if isinstance(text, tuple):  # IP-Adapter: (text states, image states); only the text is steered
            return (self._steer(text[0]), *text[1:])
        if not isinstance(text, torch.Tensor) or text.dim() != 3:
            return text
        offsets = self._offsets(text.shape[0], self.layer)
        if offsets is None:
            return text
        delta, positions = offsets
        return torch.where(positions.unsqueeze(-1), text + delta, text)


def cross_attention_modules(denoiser: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Attention modules of ``denoiser`` whose keys/values come from the text (diffusers ``attn2``)."""
    return {
        name: module
        for name, module in denoiser.named_modules()
        if hasattr(module, "set_processor") and getattr(module, "is_cross_attention", False)
    }


def select_layers(
    modules: dict[str, torch.nn.Module], layers: str | tuple[str, ...]
) -> dict[str, torch.nn.Module]:
    """The modules named by ``layers`` (``"all"`` or substrings of module names).

    Raises:
        ValueError: no cross-attention layer at all, or a name that matches none (with examples of names).
    """
    if not modules:
        raise ValueError("This denoiser has no cross-attention layers to steer; use layers=None.")
    if layers == "all":
        return modules
    selected = {name: m for name, m in modules.items() if any(pattern in name for pattern in layers)}
    unmatched = [p for p in layers if not any(p in name for name in modules)]
    if unmatched:
        examples = "\n  ".join(list(modules)[:8])
        raise ValueError(
            f"Layer names {unmatched} match no cross-attention layer. Names look like:\n  {examples}\n"
            "Pass substrings of these (e.g. 'up_blocks.1') or layers='all'."
        )
    return selected


def wrapper_chain(processor: Any) -> Iterator[Any]:
    """``processor`` and, through ``base_processor``, every steering wrapper and the processor below them."""
    while True:
        yield processor
        if not isinstance(processor, CrossAttentionSteering):
            return
        processor = processor.base_processor


class AttentionPatch:
    """The wrappers one installation put on the selected cross-attention layers of a denoiser.

    Args:
        denoiser: the UNet.
        layers: ``"all"`` or layer-name substrings.
        offsets: the offset source every wrapper asks (see :class:`CrossAttentionSteering`).
        owner: the installation (identifies its wrappers when several pipelines share one UNet).
    """

    def __init__(
        self, denoiser: torch.nn.Module, layers: str | tuple[str, ...], offsets: OffsetSource, owner
    ):
        self.modules = select_layers(cross_attention_modules(denoiser), layers)
        self.offsets = offsets
        self.owner = owner

    def _wrap(self, name: str, module: torch.nn.Module) -> None:
        module.set_processor(CrossAttentionSteering(module.processor, self.offsets, name, self.owner))

    def _ours(self, module: torch.nn.Module) -> bool:
        return any(
            isinstance(p, CrossAttentionSteering) and p.owner is self.owner
            for p in wrapper_chain(module.processor)
        )

    def install(self) -> None:
        """Wrap every selected layer's processor; on any failure the layers already wrapped are put back."""
        try:
            for name, module in self.modules.items():
                if not self._ours(module):
                    self._wrap(name, module)
        except BaseException:
            self.uninstall()
            raise

    def ensure_installed(self) -> list[str]:
        """Re-wrap the layers whose processor was replaced since :meth:`install`; returns their names."""
        missing = [name for name, module in self.modules.items() if not self._ours(module)]
        for name in missing:
            self._wrap(name, self.modules[name])
        return missing

    def uninstall(self) -> None:
        """Remove this installation's wrappers, wherever they sit in a chain of wrappers (idempotent).

        The processor below a wrapper is put back as it is now: a processor the user set after wrapping (e.g.
        attention slicing, then re-wrapped by :meth:`ensure_installed`) stays, the original object otherwise.
        """
        for module in self.modules.values():
            above = None
            for processor in wrapper_chain(module.processor):
                if isinstance(processor, CrossAttentionSteering) and processor.owner is self.owner:
                    if above is None:
                        module.set_processor(processor.base_processor)
                    else:  # another installation's wrapper sits on top of ours: splice ours out
                        _set_base(above, processor.base_processor)
                    break
                above = processor


def _set_base(wrapper: CrossAttentionSteering, processor: Any) -> None:
    # torch refuses to overwrite a registered submodule with a non-module: drop the registration first.
    wrapper._modules.pop("base_processor", None)
    wrapper.base_processor = processor
