"""What the pipeline tests share: the expected layouts of every family, stated independently of the library's
registry (which token positions and feature columns of the denoiser's text input belong to which text
encoder, and which rows of each denoiser call are the positive prompt), packs for them, and a recorder of
what the denoiser receives."""

from __future__ import annotations

import numpy as np
import torch

from safesteer_diffusers import DirectionPack

PROMPT, NEGATIVE = "a red cat", "blurry"
SD3_CLIP_TOKENS = 77

# family -> [(space, token slice, first feature column)] in the denoiser's text input.
LAYOUTS = {
    "sd": [("text_encoder", slice(None), 0)],
    "sd2": [("text_encoder", slice(None), 0)],
    "sdxl": [("text_encoder", slice(None), 0), ("text_encoder_2", slice(None), 32)],
    "sd3": [
        ("text_encoder", slice(0, SD3_CLIP_TOKENS), 0),
        ("text_encoder_2", slice(0, SD3_CLIP_TOKENS), 32),
        ("text_encoder_3", slice(SD3_CLIP_TOKENS, None), 0),
    ],
    "flux": [("text_encoder_2", slice(None), 0)],
    "animatediff": [("text_encoder", slice(None), 0)],
    "pixart_sigma": [("text_encoder", slice(None), 0)],
    "qwen_image": [("text_encoder", slice(None), 0)],
    "z_image": [("text_encoder", slice(None), 0)],
    "cogvideox": [("text_encoder", slice(None), 0)],
    "wan": [("text_encoder", slice(None), 0)],
    "ltx_video": [("text_encoder", slice(None), 0)],
    "hunyuan_video": [("text_encoder", slice(None), 0)],
    "sana": [("text_encoder", slice(None), 0)],
    "mochi": [("text_encoder", slice(None), 0)],
}
# Families whose CFG runs the negative prompt in its own denoiser call (positive call first).
SEPARATE_PASSES = {"flux", "qwen_image", "wan", "hunyuan_video"}
# Families whose batched CFG puts the positive rows first (Z-Image concatenates lists [positive, negative]).
POSITIVE_FIRST = {"z_image"}


def hidden_size(encoder) -> int:
    config = encoder.config
    config = getattr(config, "text_config", None) or config
    return getattr(config, "hidden_size", None) or config.d_model


def make_pack(pipe, family: str, thresholds: float | None = None, seed: int = 0) -> DirectionPack:
    generator = torch.Generator().manual_seed(seed)
    directions: dict[str, dict[str, torch.Tensor]] = {"global": {}, "sexual": {}}
    for space, _, _ in LAYOUTS[family]:
        dim = hidden_size(getattr(pipe, space))
        directions["global"][space] = torch.randn(dim, generator=generator)
        directions["sexual"][space] = torch.randn(dim, generator=generator)
    gate = None
    if thresholds is not None:
        gate = {name: dict.fromkeys(per, thresholds) for name, per in directions.items()}
    registry_family = "sd" if family == "sd2" else family
    return DirectionPack.from_tensors(directions, thresholds=gate, target={"family": registry_family})


def generate(pipe, kwargs, **extra):
    output = pipe(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        generator=torch.Generator("cpu").manual_seed(0),
        return_dict=False,
        **kwargs,
        **extra,
    )[0]
    if isinstance(output, torch.Tensor):
        return output.detach().float().numpy()
    return np.asarray(output)


class TextInputRecorder:
    """Records the text input of every denoiser call (as a list of per-row tensors)."""

    def __init__(self, denoiser):
        self.calls: list[list[torch.Tensor]] = []
        self.handle = denoiser.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        text = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        rows = list(text.unbind(0)) if isinstance(text, torch.Tensor) else list(text)
        self.calls.append([row.detach().clone() for row in rows])

    def remove(self):
        self.handle.remove()


def denoiser_of(pipe):
    return pipe.unet if hasattr(pipe, "unet") and pipe.unet is not None else pipe.transformer


def is_positive(family: str, call: int, row: int, rows: int) -> bool:
    if family in SEPARATE_PASSES:
        return call % 2 == 0
    if family in POSITIVE_FIRST:
        return row < rows // 2
    return row >= rows // 2
