"""`SafeSteer.wrap` / `unwrap` and the mixin API on the tiny SD pipeline: configuration, errors, restoring,
prompt_embeds, batches, dtypes, CPU offload, LoRA and IP-Adapter processors, cross-attention scoping."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection

from safesteer_diffusers import DirectionPack, SafeSteer, TargetSpec, register_target
from safesteer_diffusers.pipelines.attention import CrossAttentionSteering
from safesteer_diffusers.pipelines.registry import _REGISTRY, single_space
from safesteer_diffusers.testing import build

DIM = 32  # hidden size of the tiny SD text encoder


@pytest.fixture
def sd():
    return build("sd")


def sd_pack(**extra) -> DirectionPack:
    generator = torch.Generator().manual_seed(1)
    directions = {
        name: {"text_encoder": torch.randn(DIM, generator=generator)}
        for name in ("global", "sexual", "violence")
    }
    extra.setdefault("target", {"family": "sd"})
    return DirectionPack.from_tensors(directions, **extra)


def run(pipe, kwargs, prompt="a red cat", **extra):
    extra.setdefault("negative_prompt", "blurry")
    return pipe(prompt=prompt, generator=torch.Generator().manual_seed(0), **{**kwargs, **extra}).images


# ---------------------------------------------------------------------- configuration API
def test_set_strength_context_manager_and_disable(sd):
    pipe, kwargs = sd
    baseline = run(pipe, kwargs)
    pipe = SafeSteer.wrap(pipe, sd_pack(), strength=3.0)
    steered = run(pipe, kwargs)
    assert not np.array_equal(steered, baseline)
    with pipe.safety_steering(strength=0.0):
        assert np.array_equal(run(pipe, kwargs), baseline)
    assert pipe.safety_config.strength == 3.0
    assert np.array_equal(run(pipe, kwargs), steered)
    with pytest.raises(RuntimeError, match="boom"), pipe.safety_steering(enabled=False):
        raise RuntimeError("boom")
    assert pipe.safety_config.enabled
    pipe.disable_safety_steering()
    assert np.array_equal(run(pipe, kwargs), baseline)
    pipe.enable_safety_steering()
    pipe.set_safety_strength(3.0, categories={"sexual": 1.0})
    both = run(pipe, kwargs)
    assert not np.array_equal(both, steered)
    assert pipe.safety_report.prompts[0].fired == ["global", "sexual"]


def test_strength_algebra_matches_scaled_packs(sd):
    """strength s on pack v equals strength 1 on pack s*v; v - v is refused for a nonzero strength."""
    pipe, kwargs = sd
    baseline = run(pipe, kwargs)
    pack = sd_pack()
    pipe = SafeSteer.wrap(pipe, pack, strength=2.0)
    by_strength = run(pipe, kwargs)
    SafeSteer.unwrap(pipe)
    pipe = SafeSteer.wrap(pipe, 2.0 * pack, strength=1.0)
    assert np.array_equal(run(pipe, kwargs), by_strength)
    SafeSteer.unwrap(pipe)
    # v - v cannot steer: asking it for strength 5 is refused (fail closed), strength 0 is the baseline.
    with pytest.raises(ValueError, match="all zeros"):
        SafeSteer.wrap(pipe, pack - pack, strength=5.0)
    pipe = SafeSteer.wrap(pipe, pack - pack, strength=0.0)
    assert np.array_equal(run(pipe, kwargs), baseline)


def test_wrapping_twice_is_refused_and_unwrap_needs_a_wrapped_pipeline(sd):
    pipe, _ = sd
    SafeSteer.wrap(pipe, sd_pack())
    with pytest.raises(ValueError, match="already wrapped"):
        SafeSteer.wrap(pipe, sd_pack())
    SafeSteer.unwrap(pipe)
    with pytest.raises(ValueError, match="not wrapped"):
        SafeSteer.unwrap(pipe)


def test_wrapped_pipeline_keeps_its_identity(sd):
    pipe, _ = sd
    original_class = type(pipe)
    SafeSteer.wrap(pipe, sd_pack())
    assert isinstance(pipe, original_class)
    assert json.loads(pipe.to_json_string())["_class_name"] == "StableDiffusionPipeline"
    SafeSteer.unwrap(pipe)
    assert type(pipe) is original_class


# ---------------------------------------------------------------------- errors at wrap time
@pytest.mark.parametrize(
    ("pack_kwargs", "wrap_kwargs", "error", "match"),
    [
        ({}, {"categories": {"nudity": 1.0}}, ValueError, r"Unknown categories \['nudity'\].*sexual"),
        ({}, {"gate": True}, ValueError, "needs a gate threshold"),
        ({}, {"strength": float("nan")}, ValueError, "strength must be a finite number"),
        ({}, {"mode": "clip"}, ValueError, "mode must be one of"),
        ({}, {"tokens": "prompt"}, ValueError, "tokens='prompt' needs the attention mask"),
        ({}, {"layers": ["no_such_block"]}, ValueError, "match no cross-attention layer"),
        ({}, {"step_range": (0.5, 0.2), "layers": "all"}, ValueError, "0 <= start < end <= 1"),
        ({}, {"spaces": ["text_encoder_2"]}, ValueError, "requested but the pack has only"),
        ({}, {"pack": 42}, TypeError, "pack must be a DirectionPack"),
        ({"target": {"family": "flux"}}, {"strict": True}, ValueError, "built for family 'flux'"),
    ],
)
def test_bad_input_fails_at_wrap_time_with_a_clear_message(sd, pack_kwargs, wrap_kwargs, error, match):
    pipe, _ = sd
    pack = wrap_kwargs.pop("pack", sd_pack(**pack_kwargs))
    with pytest.raises(error, match=match):
        SafeSteer.wrap(pipe, pack, **wrap_kwargs)
    assert not SafeSteer.is_wrapped(pipe)
    assert not any(isinstance(p, CrossAttentionSteering) for p in pipe.unet.attn_processors.values())


def test_dimension_and_space_mismatches_name_both_sides(sd):
    pipe, _ = sd
    wrong_dim = DirectionPack.from_tensors({"global": {"text_encoder": torch.ones(DIM + 1)}})
    with pytest.raises(ValueError, match=r"dimension 33, the pipeline's text_encoder has hidden size 32"):
        SafeSteer.wrap(pipe, wrong_dim)
    t5_pack = DirectionPack.from_tensors({"global": {"text_encoder_3": torch.ones(DIM)}})
    with pytest.raises(
        ValueError, match=r"'text_encoder_3' is not a text space of this StableDiffusionPipeline"
    ):
        SafeSteer.wrap(pipe, t5_pack)


def test_pack_for_another_target_warns_unless_strict(sd):
    pipe, _ = sd
    with pytest.warns(UserWarning, match="built for family 'flux'"):
        SafeSteer.wrap(pipe, sd_pack(target={"family": "flux"}))


def test_layers_on_a_dit_are_refused():
    pipe, _ = build("flux")
    pack = DirectionPack.from_tensors({"global": {"text_encoder_2": torch.ones(48)}})
    with pytest.raises(ValueError, match="steer inside UNet cross-attention, which flux does not have"):
        SafeSteer.wrap(pipe, pack, layers="all")


def test_unknown_pipeline_names_the_families_and_register_target_adds_one(sd):
    pipe, _ = sd
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    with pytest.raises(
        ValueError, match=r"(?s)StableDiffusionImg2ImgPipeline is not a supported.*- sdxl:.*register_target"
    ):
        SafeSteer.wrap(img2img, sd_pack())
    spec = TargetSpec(
        "sd_img2img", ("StableDiffusionImg2ImgPipeline",), single_space("text_encoder"), denoiser="unet"
    )
    register_target(spec)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_target(spec)
        SafeSteer.wrap(img2img, sd_pack(target={}))
        assert SafeSteer.is_wrapped(img2img)
    finally:
        _REGISTRY.pop("sd_img2img")


def test_default_pack_lookup_fails_clearly_when_none_is_registered(sd, tmp_path, monkeypatch):
    pipe, _ = sd
    monkeypatch.setenv("SAFESTEER_PACKS_PATH", str(tmp_path))
    with pytest.raises(ValueError, match="No default pack is registered for model"):
        SafeSteer.wrap(pipe)
    pipe.register_to_config(_name_or_path="tiny/sd")
    sd_pack(target={"family": "sd", "model_id": "tiny/sd"}).save_pretrained(tmp_path / "tiny-sd")
    SafeSteer.wrap(pipe)
    assert pipe.safety_pack.metadata["target"]["model_id"] == "tiny/sd"


# ---------------------------------------------------------------------- generation paths
def test_exception_mid_generation_leaves_no_state_and_unwrap_restores_processors(sd):
    pipe, kwargs = sd
    baseline = run(pipe, kwargs)
    originals = dict(pipe.unet.attn_processors)
    pipe = SafeSteer.wrap(pipe, sd_pack(), strength=2.0, layers="all")
    steered = run(pipe, kwargs)

    calls = []

    def fail_on_second_step(module, args, kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("interrupted")

    handle = pipe.unet.register_forward_pre_hook(fail_on_second_step, with_kwargs=True)
    with pytest.raises(RuntimeError, match="interrupted"):
        run(pipe, kwargs)
    handle.remove()
    assert pipe._safesteer._call.get() is None and pipe._safesteer._running == 0
    assert np.array_equal(run(pipe, kwargs), steered)
    SafeSteer.unwrap(pipe)
    assert all(a is b for a, b in zip(pipe.unet.attn_processors.values(), originals.values(), strict=True))
    assert not pipe.unet._forward_pre_hooks
    assert np.array_equal(run(pipe, kwargs), baseline)


def test_prompt_embeds_passed_directly_are_steered_like_prompts(sd):
    pipe, kwargs = sd
    positive, negative = pipe.encode_prompt("a red cat", "cpu", 1, True, "blurry")
    pipe = SafeSteer.wrap(pipe, sd_pack(), strength=2.0)
    # Outside a generation encode_prompt is untouched, so embeddings made by hand are not pre-steered.
    again, _ = pipe.encode_prompt("a red cat", "cpu", 1, True, "blurry")
    assert torch.equal(again, positive)
    by_prompt = run(pipe, kwargs)
    by_embeds = pipe(
        prompt_embeds=positive,
        negative_prompt_embeds=negative,
        generator=torch.Generator().manual_seed(0),
        **kwargs,
    ).images
    assert np.array_equal(by_embeds, by_prompt)
    assert pipe.safety_report.prompts[0].prompt is None


def test_batches_and_images_per_prompt_report_every_row(sd):
    pipe, kwargs = sd
    pipe = SafeSteer.wrap(pipe, sd_pack(), strength=2.0)
    images = run(pipe, kwargs, prompt=["a cat", "a dog"], negative_prompt=["", ""], num_images_per_prompt=2)
    assert images.shape[0] == 4
    report = pipe.safety_report
    assert [p.prompt for p in report.prompts] == ["a cat", "a cat", "a dog", "a dog"]
    assert [p.row for p in report.prompts] == [0, 1, 2, 3]
    assert "row 3 'a dog': steered by global" in str(report)
    assert report.to_dict()["prompts"][0]["directions"][0]["name"] == "global"


def test_negative_prompt_is_steered_only_when_asked(sd):
    pipe, kwargs = sd
    pipe = SafeSteer.wrap(pipe, sd_pack(), strength=0.0)
    baseline = run(pipe, kwargs)
    assert not pipe.safety_report.negative_steered
    pipe.configure_safety(negative_strength=-2.0)
    assert not np.array_equal(run(pipe, kwargs), baseline)
    assert pipe.safety_report.negative_steered


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_pipelines(sd, dtype):
    pipe, kwargs = sd
    pipe.to(dtype)
    seen = []
    pipe.unet.register_forward_pre_hook(
        lambda m, a, k: seen.append(k["encoder_hidden_states"]), with_kwargs=True
    )
    baseline = run(pipe, kwargs, output_type="latent")
    pack = sd_pack()
    pipe = SafeSteer.wrap(pipe, pack, strength=0.0)
    assert torch.equal(run(pipe, kwargs, output_type="latent"), baseline)
    pipe.set_safety_strength(2.0)
    seen.clear()
    run(pipe, kwargs, output_type="latent")
    base_text = pipe.encode_prompt("a red cat", "cpu", 1, False)[0]
    assert seen[0].dtype == dtype
    assert torch.equal(seen[0][1], base_text[0] + (2.0 * pack.direction("text_encoder")).to(dtype))


def test_model_cpu_offload(sd):
    pipe, kwargs = sd
    baseline = run(pipe, kwargs)
    pipe = SafeSteer.wrap(pipe, sd_pack(), strength=2.0)
    steered = run(pipe, kwargs)
    pipe.enable_model_cpu_offload(device="cpu")
    assert np.array_equal(run(pipe, kwargs), steered)
    pipe.set_safety_strength(0.0)
    assert np.array_equal(run(pipe, kwargs), baseline)


def test_lora_adapters_keep_working_under_steering(sd):
    from peft import LoraConfig

    pipe, kwargs = sd
    torch.manual_seed(3)
    pipe.unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_v", "to_q"], init_lora_weights=False)
    )
    lora_baseline = run(pipe, kwargs)
    pipe = SafeSteer.wrap(pipe, sd_pack(), strength=0.0, layers="all")
    assert np.array_equal(run(pipe, kwargs), lora_baseline)
    pipe.set_safety_strength(2.0)
    assert not np.array_equal(run(pipe, kwargs), lora_baseline)
    pipe.unet.disable_adapters()
    no_lora_steered = run(pipe, kwargs)
    assert not np.array_equal(no_lora_steered, lora_baseline)
    SafeSteer.unwrap(pipe)
    pipe.unet.enable_adapters()
    assert np.array_equal(run(pipe, kwargs), lora_baseline)


def install_tiny_ip_adapter(unet) -> None:
    torch.manual_seed(4)
    for name, module in unet.named_modules():
        if name.endswith("attn2"):
            module.set_processor(
                IPAdapterAttnProcessor2_0(module.to_k.out_features, module.to_k.in_features, num_tokens=(4,))
            )
    unet.encoder_hid_proj = MultiIPAdapterImageProjection([ImageProjection(16, DIM, num_image_text_embeds=4)])
    unet.register_to_config(encoder_hid_dim_type="ip_image_proj")


@pytest.mark.parametrize("layers", [None, "all"])
def test_ip_adapter_processors_keep_working_under_steering(sd, layers):
    pipe, kwargs = sd
    install_tiny_ip_adapter(pipe.unet)
    image_embeds = [torch.randn(2, 1, 16, generator=torch.Generator().manual_seed(5))]
    ip_baseline = run(pipe, kwargs, ip_adapter_image_embeds=image_embeds)
    originals = dict(pipe.unet.attn_processors)
    pipe = SafeSteer.wrap(pipe, sd_pack(), strength=0.0, layers=layers)
    assert np.array_equal(run(pipe, kwargs, ip_adapter_image_embeds=image_embeds), ip_baseline)
    if layers == "all":
        wrapper = next(p for p in pipe.unet.attn_processors.values() if isinstance(p, CrossAttentionSteering))
        assert isinstance(wrapper.base_processor, IPAdapterAttnProcessor2_0)
        assert any(n.endswith("base_processor.to_k_ip.0.weight") for n, _ in pipe.unet.named_parameters())
    pipe.set_safety_strength(2.0)
    steered = run(pipe, kwargs, ip_adapter_image_embeds=image_embeds)
    assert not np.array_equal(steered, ip_baseline)
    SafeSteer.unwrap(pipe)
    assert all(a is b for a, b in zip(pipe.unet.attn_processors.values(), originals.values(), strict=True))
    assert np.array_equal(run(pipe, kwargs, ip_adapter_image_embeds=image_embeds), ip_baseline)


# ---------------------------------------------------------------------- cross-attention scoping
def test_all_layers_over_the_whole_schedule_equals_conditioning_steering(sd):
    pipe, kwargs = sd
    pipe = SafeSteer.wrap(pipe, sd_pack(), strength=2.0)
    conditioning = run(pipe, kwargs)
    pipe.configure_safety(layers="all")
    assert pipe.safety_config.injection == "cross_attention"
    assert np.array_equal(run(pipe, kwargs), conditioning)


def test_layer_and_step_scoping_change_only_their_part(sd):
    pipe, kwargs = sd
    baseline = run(pipe, kwargs)
    pipe = SafeSteer.wrap(pipe, sd_pack(), strength=2.0, layers="all")
    full = run(pipe, kwargs)
    pipe.configure_safety(layers=["up_blocks"])
    wrapped = [n for n, p in pipe.unet.attn_processors.items() if isinstance(p, CrossAttentionSteering)]
    assert wrapped and all(n.startswith("up_blocks") for n in wrapped)
    up_only = run(pipe, kwargs)
    assert not np.array_equal(up_only, baseline) and not np.array_equal(up_only, full)
    pipe.configure_safety(layers="all", step_range=(0.0, 0.5))  # 2 steps: only the first is steered
    first_step = run(pipe, kwargs)
    assert not np.array_equal(first_step, baseline) and not np.array_equal(first_step, full)
    pipe.configure_safety(step_range=(0.5, 1.0))
    second_step = run(pipe, kwargs)
    assert not np.array_equal(second_step, first_step) and not np.array_equal(second_step, baseline)


def test_projection_mode_with_centre(sd):
    pipe, kwargs = sd
    baseline = run(pipe, kwargs)
    generator = torch.Generator().manual_seed(2)
    pack = sd_pack(centers={"text_encoder": torch.randn(DIM, generator=generator)})
    pipe = SafeSteer.wrap(pipe, pack, strength=0.0, mode="project")
    assert np.array_equal(run(pipe, kwargs), baseline)
    pipe.set_safety_strength(1.0)
    assert not np.array_equal(run(pipe, kwargs), baseline)
