"""Conditioning-level steering (``safesteer_diffusers.steering.conditioning``) and the nodes that need no ComfyUI import:
SafeSteer Conditioning and SafeSteer Report act on plain ``CONDITIONING`` lists ``[[tensor, dict]]``."""

from __future__ import annotations

import importlib.util
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.steering.conditioning import (
    TextSteerer,
    cond_rows_from_chunks,
    infer_clip_tokens,
    layouts_for_tensor,
    steer_text,
)
from safesteer_diffusers.steering.config import MAX_STRENGTH, SteeringConfig
from safesteer_diffusers.steering.layout import SpaceLayout
from tests.comfy.support import OUR_NODES, REPO_ROOT, conditioning, pack_without, strengths, tiny_pack

L, G, T5 = 8, 12, 24  # stand-ins for CLIP-L 768, CLIP-G 1280, T5 4096
CATEGORY_INPUTS = ("hate", "harassment", "violence", "self_harm", "sexual", "shocking", "illegal_activity")


def multi_pack(spaces: dict[str, int], family: str | None = None, seed: int = 3) -> DirectionPack:
    generator = torch.Generator().manual_seed(seed)
    directions = {
        name: {s: torch.randn(d, generator=generator) for s, d in spaces.items()}
        for name in ("global", "sexual")
    }
    return DirectionPack.from_tensors(directions, target={"family": family} if family else {})


# ---------------------------------------------------------------------- layouts
def test_single_space_matches_by_width():
    pack = tiny_pack(32)
    assert layouts_for_tensor(pack, 32, 77) == [SpaceLayout("text_encoder", 32)]


def test_sdxl_spaces_concatenate_on_the_feature_axis_in_pack_order():
    pack = multi_pack({"text_encoder": L, "text_encoder_2": G})
    assert layouts_for_tensor(pack, L + G, 77) == [
        SpaceLayout("text_encoder", L, feature_start=0),
        SpaceLayout("text_encoder_2", G, feature_start=L),
    ]
    # SDXL refiner conditioning holds only CLIP-G: the matching space alone.
    assert layouts_for_tensor(pack, G, 77) == [SpaceLayout("text_encoder_2", G)]


def test_sd3_layout_puts_clip_on_the_first_tokens_and_t5_after():
    pack = multi_pack({"text_encoder": L, "text_encoder_2": G, "text_encoder_3": T5})
    assert layouts_for_tensor(pack, T5, 77 + 5) == [
        SpaceLayout("text_encoder", L, 0, 0, 77),
        SpaceLayout("text_encoder_2", G, L, 0, 77),
        SpaceLayout("text_encoder_3", T5, 0, 77, None),
    ]
    # No T5 tokens (CLIP-only conditioning): T5 is left out; explicit boundary honoured.
    assert [x.space for x in layouts_for_tensor(pack, T5, 77)] == ["text_encoder", "text_encoder_2"]
    assert layouts_for_tensor(pack, T5, 160, clip_tokens=154)[2] == SpaceLayout("text_encoder_3", T5, 0, 154)
    # T5-only conditioning (boundary 0): every token is T5.
    assert layouts_for_tensor(pack, T5, 10, clip_tokens=0) == [SpaceLayout("text_encoder_3", T5, 0, 0)]


def test_mismatch_error_names_pack_dims_tensor_shape_and_fix():
    pack = multi_pack({"text_encoder": L, "text_encoder_2": G}, family="sdxl")
    with pytest.raises(ValueError) as error:
        layouts_for_tensor(pack, 32, 77)
    message = str(error.value)
    assert "{'text_encoder': 8, 'text_encoder_2': 12}" in message
    assert "[B, 77, 32]" in message
    assert "Use a pack built for this model" in message


def test_ambiguous_width_asks_to_restrict_spaces():
    pack = multi_pack({"text_encoder": L, "text_encoder_2": L})
    with pytest.raises(ValueError, match="ambiguous"):
        layouts_for_tensor(pack, L, 77)
    assert layouts_for_tensor(pack, L, 77, spaces=["text_encoder_2"]) == [SpaceLayout("text_encoder_2", L)]
    with pytest.raises(ValueError, match="not in this pack"):
        layouts_for_tensor(pack, L, 77, spaces=["text_encoder_9"])


def test_infer_clip_tokens_reads_the_zero_padding():
    clip = torch.cat([torch.randn(2, 77, L + G), torch.zeros(2, 77, T5 - L - G)], dim=-1)
    t5 = torch.randn(2, 9, T5)
    assert infer_clip_tokens(torch.cat([clip, t5], dim=1), L + G) == 77
    assert infer_clip_tokens(clip, L + G) == 77
    assert infer_clip_tokens(t5, L + G) == 0


# ---------------------------------------------------------------------- steer_text
def test_steer_text_adds_exactly_strength_times_vector():
    pack = tiny_pack(32)
    hidden = torch.randn(2, 7, 32)
    steered, report = steer_text(hidden, pack, SteeringConfig(strength=2.5))
    assert torch.equal(steered, hidden + 2.5 * pack.direction("text_encoder"))
    assert [p.row for p in report.prompts] == [0, 1] and all(p.fired == ["global"] for p in report.prompts)


def test_steer_text_zero_strength_returns_the_same_object():
    pack = tiny_pack(32)
    hidden = torch.randn(1, 7, 32)
    assert steer_text(hidden, pack, SteeringConfig(strength=0.0))[0] is hidden
    assert steer_text(hidden, pack, SteeringConfig(strength=3.0, enabled=False))[0] is hidden


def test_steer_text_sdxl_slices_get_their_own_vectors():
    pack = multi_pack({"text_encoder": L, "text_encoder_2": G})
    hidden = torch.randn(1, 5, L + G)
    steered, _ = steer_text(hidden, pack, SteeringConfig(strength=1.5))
    assert torch.equal(steered[..., :L], hidden[..., :L] + 1.5 * pack.direction("text_encoder"))
    assert torch.equal(steered[..., L:], hidden[..., L:] + 1.5 * pack.direction("text_encoder_2"))


def test_steer_text_sd3_keeps_the_padding_and_steers_t5_tokens_with_t5_vector():
    pack = multi_pack({"text_encoder": L, "text_encoder_2": G, "text_encoder_3": T5})
    clip = torch.cat([torch.randn(1, 77, L + G), torch.zeros(1, 77, T5 - L - G)], dim=-1)
    hidden = torch.cat([clip, torch.randn(1, 6, T5)], dim=1)
    steered, _ = steer_text(hidden, pack, SteeringConfig(strength=2.0))
    assert torch.equal(steered[:, :77, :L], hidden[:, :77, :L] + 2.0 * pack.direction("text_encoder"))
    assert torch.equal(
        steered[:, :77, L : L + G], hidden[:, :77, L : L + G] + 2.0 * pack.direction("text_encoder_2")
    )
    assert torch.equal(steered[:, :77, L + G :], hidden[:, :77, L + G :])  # zero padding stays zero
    assert torch.equal(steered[:, 77:], hidden[:, 77:] + 2.0 * pack.direction("text_encoder_3"))


def test_cond_rows_only_steers_those_rows_and_leaves_others_bit_identical():
    pack = tiny_pack(32)
    hidden = torch.randn(4, 7, 32)
    rows = cond_rows_from_chunks([0, 1], 4)
    assert rows.tolist() == [True, True, False, False]
    steered, report = steer_text(hidden, pack, SteeringConfig(strength=1.0), rows)
    assert torch.equal(steered[2:], hidden[2:])
    assert torch.equal(steered[:2], hidden[:2] + pack.direction("text_encoder"))
    assert [p.row for p in report.prompts] == [0, 1]
    with pytest.raises(ValueError, match="length 4"):
        steer_text(hidden, pack, SteeringConfig(), [True, False])
    with pytest.raises(ValueError, match="cond/uncond chunks"):
        cond_rows_from_chunks([0, 1, 1], 4)
    assert cond_rows_from_chunks(None, 3).tolist() == [True, True, True]


def test_negative_strength_steers_only_the_other_rows():
    pack = tiny_pack(32)
    hidden = torch.randn(2, 3, 32)
    config = SteeringConfig(strength=0.0, negative_strength=-1.0)
    steered, report = steer_text(hidden, pack, config, [True, False])
    assert torch.equal(steered[0], hidden[0])
    assert torch.equal(steered[1], hidden[1] - pack.direction("text_encoder"))
    assert report.negative_steered


def test_gate_steers_the_unsafe_row_and_passes_the_benign_row_bit_for_bit():
    pack = tiny_pack(32, thresholds={"global": 1.0, "sexual": 1.0})
    unit = pack.direction("text_encoder", "sexual") / pack.direction("text_encoder", "sexual").norm()
    benign = torch.randn(1, 5, 32) * 0.01
    unsafe = benign - 5.0 * unit  # far on the unsafe side of the 'sexual' direction
    hidden = torch.cat([benign, unsafe])
    config = SteeringConfig(strength=0.0, categories={"sexual": 2.0}, gate=True)
    steered, report = steer_text(hidden, pack, config)
    assert torch.equal(steered[0], hidden[0])
    assert torch.equal(steered[1], hidden[1] + 2.0 * pack.direction("text_encoder", "sexual"))
    assert report.prompts[0].fired == [] and report.prompts[1].fired == ["sexual"]


def test_text_steerer_validates_up_front_and_reuses_plans():
    with pytest.raises(ValueError, match="gate=True needs a gate threshold"):
        TextSteerer(tiny_pack(32), SteeringConfig(gate=True))
    with pytest.raises(ValueError, match="Unknown categories"):
        TextSteerer(tiny_pack(32, categories=("sexual",)), SteeringConfig(categories={"hate": 1.0}))
    with pytest.raises(ValueError, match="tokens='prompt'"):
        TextSteerer(tiny_pack(32), SteeringConfig(tokens="prompt"))(torch.randn(1, 3, 32))
    steerer = TextSteerer(tiny_pack(32), SteeringConfig())
    steerer(torch.randn(1, 3, 32))
    steerer(torch.randn(2, 3, 32))
    assert len(steerer._plans) == 1


# ---------------------------------------------------------------------- nodes without ComfyUI
def test_conditioning_node_adds_strength_times_vector_and_keeps_pooled_output():
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning

    pack = tiny_pack(32)
    tensor, pooled = torch.randn(1, 7, 32), torch.randn(1, 32)
    original, before = conditioning(tensor, pooled_output=pooled, extra="x"), tensor.clone()
    (out,) = SafeSteerConditioning().steer(original, pack, **strengths(1.5, sexual=0.5))
    expected = tensor + (
        1.5 * pack.direction("text_encoder") + 0.5 * pack.direction("text_encoder", "sexual")
    )
    torch.testing.assert_close(out[0][0], expected, rtol=0, atol=1e-6)
    (single,) = SafeSteerConditioning().steer(original, pack, **strengths(1.5))
    assert torch.equal(single[0][0], tensor + 1.5 * pack.direction("text_encoder"))
    assert out[0][1]["pooled_output"] is pooled and out[0][1]["extra"] == "x"
    assert out[0][1] is not original[0][1] and out is not original
    assert torch.equal(original[0][0], before) and original[0][0] is tensor  # input untouched
    (zero,) = SafeSteerConditioning().steer(original, pack, **strengths(0.0))
    assert zero[0][0] is tensor


def test_conditioning_node_refuses_categories_the_pack_lacks():
    # Was test_conditioning_node_ignores_categories_the_pack_lacks: a strength for a missing category used to be
    # dropped with an INFO log (steering less than asked); it is now an error naming the input to change.
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning

    pack = tiny_pack(32, categories=("sexual",))
    tensor = torch.randn(1, 4, 32)
    with pytest.raises(ValueError) as error:
        SafeSteerConditioning().steer(conditioning(tensor), pack, **strengths(0.0, hate=3.0, sexual=1.0))
    message = str(error.value)
    assert "has no direction for hate=3 (the 'hate' direction)" in message
    assert "['global', 'sexual']" in message and "Set hate to 0" in message
    # At 0 the missing category is simply off; the others are applied exactly.
    (out,) = SafeSteerConditioning().steer(conditioning(tensor), pack, **strengths(0.0, hate=0.0, sexual=1.0))
    assert torch.equal(out[0][0], tensor + pack.direction("text_encoder", "sexual"))


def test_conditioning_node_refuses_strength_on_a_pack_without_global_direction():
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning

    pack = pack_without(32, categories=("sexual", "self-harm"))
    tensor = torch.randn(2, 5, 32)
    with pytest.raises(ValueError) as error:
        SafeSteerConditioning().steer(conditioning(tensor), pack, **strengths(1.0))  # the default strength
    message = str(error.value)
    assert "has no direction for strength=1 (the 'global' direction)" in message
    assert "Set strength to 0" in message and "load a pack built with this direction" in message
    with pytest.raises(
        ValueError, match=r"strength=2 .*, self_harm=0\.5 \(the 'self-harm'.*Set strength and"
    ):
        SafeSteerConditioning().steer(
            conditioning(tensor), pack_without(32, categories=("sexual",)), **strengths(2.0, self_harm=0.5)
        )
    (out,) = SafeSteerConditioning().steer(conditioning(tensor), pack, **strengths(0.0, self_harm=2.0))
    assert torch.equal(out[0][0], tensor + 2.0 * pack.direction("text_encoder", "self-harm"))


@pytest.mark.parametrize(
    "inputs, found",
    [
        ({"strength": 1e30}, "'strength': 1e+30"),
        ({"strength": float("inf")}, "'strength': inf"),
        ({"strength": float("nan")}, "'strength': nan"),
        ({"strength": 20.5}, "'strength': 20.5"),
        ({"strength": 0.0, "sexual": 1e30}, "'sexual': 1e+30"),
        ({"strength": -1.0}, "'strength': -1.0"),
        ({"strength": 0.0, "violence": -0.5}, "'violence': -0.5"),
    ],
)
def test_strengths_out_of_bounds_or_toward_unsafe_are_refused(inputs, found):
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning

    tensor = torch.randn(1, 4, 32)
    with pytest.raises(ValueError) as error:
        SafeSteerConditioning().steer(conditioning(tensor), tiny_pack(32), **strengths(**inputs))
    message = str(error.value)
    assert found in message and "from 0 to 20" in message and "Set those inputs within 0-20" in message
    assert "Negative strengths (toward the unsafe side) are refused" in message


def test_strength_inputs_are_bounded_like_the_library():
    from comfy_nodes import NODE_CLASS_MAPPINGS

    for name in ("SafeSteerModel", "SafeSteerConditioning"):
        required = NODE_CLASS_MAPPINGS[name].INPUT_TYPES()["required"]
        for key in ("strength", *CATEGORY_INPUTS):
            assert required[key][1]["min"] == 0.0 and required[key][1]["max"] == MAX_STRENGTH, (name, key)
    # The bound itself is accepted and applied exactly.
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning

    pack, tensor = tiny_pack(32), torch.randn(1, 4, 32)
    (out,) = SafeSteerConditioning().steer(conditioning(tensor), pack, **strengths(MAX_STRENGTH))
    assert torch.equal(out[0][0], tensor + MAX_STRENGTH * pack.direction("text_encoder"))


def test_config_from_inputs_builds_the_library_config_with_its_bounds():
    from comfy_nodes.common import config_from_inputs

    config = config_from_inputs(tiny_pack(32), **strengths(1.5, sexual=2.0))
    assert config.strength == 1.5 and config.categories == {"sexual": 2.0}
    assert config.strength_limit == MAX_STRENGTH and config.allow_toward_unsafe is False


def test_conditioning_node_refuses_all_zero_vectors():
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning

    pack = DirectionPack.from_tensors(
        {"global": {"text_encoder": torch.zeros(32)}, "sexual": {"text_encoder": torch.randn(32)}}
    )
    with pytest.raises(
        ValueError, match=r"\['global.text_encoder'\] are all zeros.*set those strengths to 0"
    ):
        SafeSteerConditioning().steer(conditioning(torch.randn(1, 4, 32)), pack, **strengths(1.0))


def test_conditioning_node_refuses_an_empty_conditioning_when_steering_is_set():
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning

    with pytest.raises(ValueError, match="empty CONDITIONING.*Connect the positive prompt"):
        SafeSteerConditioning().steer([], tiny_pack(32), **strengths(1.0))
    assert SafeSteerConditioning().steer([], tiny_pack(32), **strengths(0.0)) == ([],)


def test_non_finite_steered_states_raise_instead_of_returning():
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning
    from safesteer_diffusers.steering.errors import SteeringNotApplied

    # Within bounds, but half-precision states near their maximum overflow: the call raises, nothing returns.
    tensor = torch.full((1, 4, 32), 65504.0, dtype=torch.float16)
    pack = tiny_pack(32)
    with pytest.raises(SteeringNotApplied, match="non-finite"):
        SafeSteerConditioning().steer(conditioning(tensor), pack, **strengths(MAX_STRENGTH))


def test_conditioning_node_errors_are_clear():
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning

    with pytest.raises(ValueError, match=r"CONDITIONING entry 0: .*\[B, 7, 48\]"):
        SafeSteerConditioning().steer(conditioning(torch.randn(1, 7, 48)), tiny_pack(32), **strengths(1.0))
    with pytest.raises(ValueError, match="gate=True needs a gate threshold"):
        SafeSteerConditioning().steer(
            conditioning(torch.randn(1, 7, 32)), tiny_pack(32), **{**strengths(1.0), "gate": True}
        )
    with pytest.raises(TypeError, match="Load SafeSteer Pack"):
        SafeSteerConditioning().steer(conditioning(torch.randn(1, 7, 32)), "not a pack", **strengths(1.0))


def test_report_node_says_which_categories_fire():
    from comfy_nodes.conditioning_nodes import SafeSteerReport

    pack = tiny_pack(32, thresholds={name: 1.0 for name in ("global", *tiny_pack(32).categories)})
    unit = pack.direction("text_encoder", "violence") / pack.direction("text_encoder", "violence").norm()
    benign = torch.zeros(1, 5, 32)
    result = SafeSteerReport().report(pack, conditioning(torch.cat([benign, benign - 4.0 * unit])))
    text = result["result"][0]
    assert result["ui"]["text"] == [text]
    assert "row 0: fired: none" in text
    fired_line = next(line for line in text.splitlines() if line.startswith("conditioning 0, row 1"))
    assert "violence" in fired_line
    only_pack = SafeSteerReport().report(tiny_pack(32))["result"][0]
    assert "Connect a CONDITIONING" in only_pack
    no_gate = SafeSteerReport().report(tiny_pack(32), conditioning(benign))["result"][0]
    assert "no gate thresholds" in no_gate


def _gated_rows(pack: DirectionPack, name: str) -> torch.Tensor:
    # Row 0 benign (below every threshold), row 1 far on the unsafe side of `name` only.
    unit = pack.direction("text_encoder", name) / pack.direction("text_encoder", name).norm()
    benign = torch.zeros(1, 5, 32)
    return torch.cat([benign, benign - 4.0 * unit])


def test_report_node_states_what_was_applied_not_what_was_configured():
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning, SafeSteerReport

    pack = tiny_pack(32, thresholds={name: 1.0 for name in ("global", *tiny_pack(32).categories)})
    tensor = _gated_rows(pack, "sexual")
    (steered,) = SafeSteerConditioning().steer(
        conditioning(tensor), pack, **{**strengths(0.0, sexual=2.0), "gate": True}
    )
    # Configured: sexual=2 on both rows. Applied: row 1 only (row 0 is gated out), by exactly 2 * v.
    vector = pack.direction("text_encoder", "sexual")
    assert torch.equal(steered[0][0][0], tensor[0])
    assert torch.equal(steered[0][0][1], tensor[1] + 2.0 * vector)
    text = SafeSteerReport().report(pack, steered)["result"][0]
    lines = text.splitlines()
    assert "conditioning 0, row 0: applied: nothing (gated out: sexual)" in lines
    norm = float((steered[0][0][1] - tensor[1]).float().norm(dim=-1).mean())
    assert f"conditioning 0, row 1: applied: sexual 2; offset norm added: text_encoder {norm:.4g}" in lines
    assert (
        "Gate check (what gate=True would steer; nothing here is applied), scored on the text states as they "
        "arrive here, after the steering above:" in lines
    )

    # Nothing upstream: nothing applied, whatever a steering node elsewhere is configured to do.
    plain = SafeSteerReport().report(pack, conditioning(tensor))["result"][0]
    assert (
        "conditioning 0: nothing applied by SafeSteer Conditioning" in plain
        and "applied: sexual" not in plain
    )
    # Strength 0: the node ran and applied nothing.
    (zero,) = SafeSteerConditioning().steer(conditioning(tensor), pack, **strengths(0.0))
    zero_text = SafeSteerReport().report(pack, zero)["result"][0]
    assert "conditioning 0, row 0: applied: nothing (every strength 0)" in zero_text.splitlines()
    # A node after SafeSteer Conditioning replaced the text states: the record no longer describes them.
    replaced = [[steered[0][0] * 0.5, steered[0][1]]]
    replaced_text = SafeSteerReport().report(pack, replaced)["result"][0]
    assert (
        "conditioning 0: unknown: a node after SafeSteer Conditioning replaced these text states"
        in replaced_text
    )
    # Two nodes in a row: both are reported, in order.
    (twice,) = SafeSteerConditioning().steer(steered, pack, **strengths(1.0))
    twice_lines = SafeSteerReport().report(pack, twice)["result"][0].splitlines()
    assert (
        "conditioning 0, SafeSteer Conditioning 1, row 0: applied: nothing (gated out: sexual)" in twice_lines
    )
    assert any(
        line.startswith("conditioning 0, SafeSteer Conditioning 2, row 0: applied: global 1;")
        for line in twice_lines
    )


def test_the_applied_record_is_the_library_report_of_the_call():
    from comfy_nodes.conditioning_nodes import APPLIED_KEY, AppliedSteering, SafeSteerConditioning

    pack, tensor = tiny_pack(32), torch.randn(2, 3, 32)
    (out,) = SafeSteerConditioning().steer(conditioning(tensor, pooled_output=None), pack, **strengths(1.5))
    record = out[0][1][APPLIED_KEY]
    assert isinstance(record, AppliedSteering) and record.tensor is out[0][0] and record.earlier == ()
    assert [row.steered for row in record.report.prompts] == [True, True]
    expected = float((1.5 * pack.direction("text_encoder")).norm())
    assert all(
        row.applied["text_encoder"] == pytest.approx(expected, rel=1e-5) for row in record.report.prompts
    )


# ---------------------------------------------------------------------- library helpers the nodes use
def test_missing_directions_names_every_nonzero_strength_the_pack_lacks():
    from safesteer_diffusers.steering.conditioning import missing_directions

    pack = pack_without(32, categories=("sexual",))
    assert missing_directions(
        pack, SteeringConfig(strength=1.0, categories={"hate": 2.0, "sexual": 1.0})
    ) == {
        "global": 1.0,
        "hate": 2.0,
    }
    assert (
        missing_directions(pack, SteeringConfig(strength=0.0, categories={"hate": 0.0, "sexual": 1.0})) == {}
    )
    assert missing_directions(pack, SteeringConfig(strength=0.0, negative_strength=-1.0)) == {"global": -1.0}
    assert missing_directions(tiny_pack(32), SteeringConfig(strength=3.0)) == {}


def test_text_steerer_check_width_refuses_a_width_the_pack_does_not_fit():
    steerer = TextSteerer(tiny_pack(64), SteeringConfig(strength=1.0))
    assert steerer.check_width(64) == [SpaceLayout("text_encoder", 64)]
    with pytest.raises(ValueError) as error:
        steerer.check_width(4096)
    message = str(error.value)
    assert "{'text_encoder': 64}" in message and "[B, T, 4096]" in message
    assert "Use a pack built for this model" in message


def test_steering_nodes_expose_global_and_seven_category_strengths():
    from comfy_nodes import NODE_CLASS_MAPPINGS

    for name in ("SafeSteerModel", "SafeSteerConditioning"):
        required = NODE_CLASS_MAPPINGS[name].INPUT_TYPES()["required"]
        floats = [key for key, spec in required.items() if spec[0] == "FLOAT"]
        assert floats[:8] == [
            "strength",
            "hate",
            "harassment",
            "violence",
            "self_harm",
            "sexual",
            "shocking",
            "illegal_activity",
        ]
        # The link inputs carry a tooltip too (test_every_input_of_every_node_has_a_tooltip).
        assert required["pack"][0] == "SAFESTEER_PACK" and required["pack"][1]["tooltip"]
        assert required["mode"][0] == ["add", "project"] and required["gate"][0] == "BOOLEAN"
    assert all(cls.CATEGORY == "safesteer" for cls in NODE_CLASS_MAPPINGS.values())


def test_importing_the_nodes_imports_neither_diffusers_nor_comfy():
    code = (
        "import sys, comfy_nodes; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('diffusers', 'transformers', 'comfy')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pyproject_carries_the_comfy_registry_table():
    tomllib = pytest.importorskip("tomllib")
    table = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["comfy"]
    assert table["PublisherId"] and table["DisplayName"]


def test_a_plain_clone_in_custom_nodes_uses_its_own_library(tmp_path):
    # ComfyUI users clone the repository without pip-installing it: the root __init__.py must then make the
    # library next to it importable. Run in a fresh interpreter whose site-packages hold only dependencies.
    installed = importlib.util.find_spec("safesteer_diffusers")
    if installed is not None and REPO_ROOT not in Path(installed.origin).resolve().parents:
        pytest.skip("safesteer_diffusers is installed as a regular package; cannot hide it from a subprocess")
    clone = tmp_path / "safesteer-diffusers"
    clone.mkdir()
    shutil.copy(REPO_ROOT / "__init__.py", clone)
    for folder in ("comfy_nodes", "safesteer_diffusers"):
        shutil.copytree(REPO_ROOT / folder, clone / folder, ignore=shutil.ignore_patterns("__pycache__"))
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        sys.path.extend({site.getsitepackages()!r})  # -S: no .pth files, so no editable install finder
        assert importlib.util.find_spec("safesteer_diffusers") is None
        spec = importlib.util.spec_from_file_location("safesteer-diffusers", {str(clone / "__init__.py")!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        assert sorted(module.NODE_CLASS_MAPPINGS) == {sorted(OUR_NODES)!r}, module.NODE_CLASS_MAPPINGS
        assert sys.modules["safesteer_diffusers"].__file__.startswith({str(clone)!r})
        """
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_conditioning_node_gates_with_the_thresholds_of_the_chosen_rate():
    """gate_fpr picks the pack's thresholds for that benign false-positive rate; a rate the pack does not store
    is refused. Known answer: the row's classic gate score is 0.5, between the 1% (1.0) and 10% (0.25) levels."""
    direction = torch.zeros(32)
    direction[0] = 2.0
    pack = DirectionPack.from_tensors(
        {"global": {"text_encoder": direction}},
        thresholds={"global": {"text_encoder": 1.0}},
        gate={
            "fpr_thresholds": {
                "0.01": {"global": {"text_encoder": 1.0}},
                "0.1": {"global": {"text_encoder": 0.25}},
            }
        },
    )
    hidden = torch.zeros(1, 4, 32)
    hidden[..., 0] = -0.5  # score = -(mean h) . v/|v| = 0.5
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning

    node = SafeSteerConditioning()
    kwargs = {**strengths(1.0), "gate": True}
    (default,) = node.steer(conditioning(hidden.clone()), pack, **kwargs)[:1]
    assert torch.equal(default[0][0], hidden)  # below the default threshold: untouched
    (loose,) = node.steer(conditioning(hidden.clone()), pack, gate_fpr="0.1", **kwargs)[:1]
    assert torch.equal(loose[0][0], hidden + direction)
    with pytest.raises(ValueError, match=r"rates \[0.01, 0.1\]"):
        node.steer(conditioning(hidden.clone()), pack, gate_fpr="0.05", **kwargs)
    with pytest.raises(ValueError, match="gate_fpr must be one of"):
        node.steer(conditioning(hidden.clone()), pack, gate_fpr="5%", **kwargs)
