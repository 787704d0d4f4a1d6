"""What a new user meets first: a tooltip on every input, one validation error per problem, a report that reads
as text, and an example workflow whose note tells the truth about packs and whose layout does not collide.

The validation checks run ComfyUI's own ``validate_prompt``; the server-level ones are in ``test_server.py``.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.steering.report import OUTCOMES
from tests.comfy.support import (
    EXAMPLES,
    OUR_NODES,
    REPO_ROOT,
    conditioning,
    strengths,
    tiny_pack,
    validate_with_comfyui,
    widget_inputs,
)

WORKFLOW = EXAMPLES / "safesteer_txt2img.json"
API_WORKFLOW = EXAMPLES / "safesteer_txt2img_api.json"
# Where current ComfyUI looks for a custom node's example workflows (its template browser).
WORKFLOW_COPY = REPO_ROOT / "example_workflows" / "safesteer_txt2img.json"
REPORT_JS = REPO_ROOT / "comfy_nodes" / "web" / "safesteer_report.js"
TITLE_HEIGHT = 30  # LiteGraph draws a node's title bar above its pos


# ---------------------------------------------------------------------- tooltips
def test_every_input_of_every_node_has_a_tooltip():
    from comfy_nodes import NODE_CLASS_MAPPINGS

    for name in OUR_NODES:
        types_ = NODE_CLASS_MAPPINGS[name].INPUT_TYPES()
        inputs = [(n, spec) for section in types_.values() for n, spec in section.items()]
        assert inputs, name
        for input_name, spec in inputs:
            options = spec[1] if len(spec) > 1 else {}
            tooltip = options.get("tooltip")
            assert isinstance(tooltip, str) and tooltip.strip(), (name, input_name)


# ---------------------------------------------------------------------- one error per problem
def _example_api() -> tuple[dict, str]:
    api = json.loads(API_WORKFLOW.read_text())
    loader = next(k for k, n in api.items() if n["class_type"] == "LoadSafeSteerPack")
    return api, loader


def test_a_pack_that_cannot_be_found_is_one_validation_error(env, tmp_path, monkeypatch):
    # Was three errors, one per input VALIDATE_INPUTS names (pack_name, hub_repo_id, revision), each with the
    # same message: ComfyUI attaches a returned message to every such input.
    api, loader = _example_api()
    pack_name = api[loader]["inputs"]["pack_name"]
    assert api[loader]["inputs"]["hub_repo_id"] == "" and "revision" in api[loader]["inputs"]
    valid, error, outputs, node_errors = validate_with_comfyui(env, tmp_path, monkeypatch, api, pack_files=[])
    assert not valid and outputs == [] and error["type"] == "prompt_outputs_failed_validation"
    assert set(node_errors) == {loader}  # the nodes that depend on the pack carry no copy of it
    (problem,) = node_errors[loader]["errors"]
    assert f"Pack file {pack_name!r} was not found in {tmp_path / 'safesteer'}" in problem["details"]
    assert "hub_repo_id" in problem["details"]  # the message says what else to do
    output_nodes = {k for k, n in api.items() if n["class_type"] in ("SaveImage", "SafeSteerReport")}
    assert set(node_errors[loader]["dependent_outputs"]) == output_nodes


def test_a_hub_repo_id_validates_with_any_saved_pack_name(env, tmp_path, monkeypatch):
    # The Hub id is used instead of pack_name, so a pack_name this installation lacks is no error; the Hub is
    # reached when the node runs.
    api, loader = _example_api()
    api[loader]["inputs"]["hub_repo_id"] = "org/steer"
    valid, error, outputs, node_errors = validate_with_comfyui(env, tmp_path, monkeypatch, api, pack_files=[])
    assert valid, (error, node_errors)
    assert node_errors == {}


# ---------------------------------------------------------------------- the report's text
def _pack_with_local_paths() -> DirectionPack:
    # A pack built from local folders records their absolute paths as model ids; the report must not show them.
    e = torch.eye(4)
    return DirectionPack.from_tensors(
        {
            "global": {"text_encoder": e[2]},
            "sexual": {"text_encoder": 2 * e[0]},
            "violence": {"text_encoder": 2 * e[1]},
        },
        thresholds={name: {"text_encoder": 1.0} for name in ("global", "sexual", "violence")},
        kind="transferred",
        source={"model_id": "/home/alice/models/Llama-3.1-8B-Instruct", "layer": 12},
        target={"family": "sd", "model_id": "/home/alice/checkpoints/my-sd15"},
    )


HEADER = """\
SafeSteer pack: mine/safesteer_pack.safetensors
  kind: transferred (directions estimated in a source language model, carried to the target's text space)
  source: local 'Llama-3.1-8B-Instruct', layer 12
  target: local 'my-sd15' (family sd); text width: text_encoder 4
  directions: global; categories: sexual, violence
  gate thresholds: yes (benign-calibrated)"""

REPORT = (
    HEADER
    + """
Applied (what SafeSteer Conditioning added to this conditioning, from the library's report):
conditioning 0, row 0: applied: nothing (gated out: sexual, violence)
    sexual            not steered (below threshold)      strength applied 0 (configured 2)
    violence          not steered (below threshold)      strength applied 0 (configured 1)
    not requested (strength 0): global
conditioning 0, row 1: applied: sexual 2; offset norm added: text_encoder 4; gated out: violence
    sexual            steered                            strength applied 2 (configured 2)
    violence          not steered (below threshold)      strength applied 0 (configured 1)
    not requested (strength 0): global
Gate check (what gate=True would steer; nothing here is applied), scored on the text states as they arrive \
here, after the steering above:
conditioning 0, row 0: fired: none (benign for every direction)
  global            text_encoder score -0.500, not above threshold +1.000: not steered (below threshold)
  sexual            text_encoder score -0.500, not above threshold +1.000: not steered (below threshold)
  violence          text_encoder score -0.500, not above threshold +1.000: not steered (below threshold)
conditioning 0, row 1: fired: sexual
  global            text_encoder score -0.500, not above threshold +1.000: not steered (below threshold)
  sexual            text_encoder score +2.000, above threshold +1.000: gate=True would steer it
  violence          text_encoder score -0.500, not above threshold +1.000: not steered (below threshold)"""
)


def test_the_report_text_reads_as_text_with_the_library_vocabulary(env, pack_folder):
    from comfy_nodes.conditioning_nodes import SafeSteerConditioning, SafeSteerReport
    from comfy_nodes.pack_nodes import LoadSafeSteerPack

    _pack_with_local_paths().save_pretrained(pack_folder / "mine")
    (pack,) = LoadSafeSteerPack().load("mine/safesteer_pack.safetensors")
    # Row 0 on the safe side of every direction; row 1 far on the unsafe side of 'sexual' only.
    safe = torch.tensor([0.5, 0.5, 0.5, 0.0])
    unsafe = torch.tensor([-6.0, 0.5, 0.5, 0.0])
    tensor = torch.stack([safe, unsafe])[:, None, :].expand(2, 3, 4).contiguous()
    inputs = {**strengths(0.0, sexual=2.0, violence=1.0), "gate": True}
    (steered,) = SafeSteerConditioning().steer(conditioning(tensor), pack, **inputs)

    text = SafeSteerReport().report(pack, steered)["result"][0]
    assert text == REPORT
    assert "/home/alice" not in text and "DirectionPack(" not in text
    # Each direction line of the applied part uses one of the library's outcomes.
    for line in text.splitlines():
        if line.startswith("    ") and "configured" in line:
            assert any(outcome in line for outcome in OUTCOMES.values()), line
    assert f"    {OUTCOMES['off']}: global" in text.splitlines()

    only_pack = SafeSteerReport().report(pack)["result"][0]
    assert only_pack == HEADER + (
        "\nConnect a CONDITIONING to see what was applied to it and which categories fire for its prompt."
    )


def test_the_report_names_hub_packs_by_repo_and_other_packs_as_unnamed(env, pack_folder, monkeypatch):
    from comfy_nodes.conditioning_nodes import report_text
    from comfy_nodes.pack_nodes import LoadSafeSteerPack

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny_pack(seed=9).save_pretrained(pack_folder / "org--steer@v1")  # downloaded earlier
    (pack,) = LoadSafeSteerPack().load("(ignored)", hub_repo_id="org/steer", revision="v1")
    lines = report_text(pack).splitlines()
    assert lines[:3] == [
        "SafeSteer pack: org/steer@v1 (Hub)",
        "  kind: manual (vectors given by hand)",
        "  source: not recorded",
    ]
    assert lines[3] == "  target: tiny/sd15 (family sd); text width: text_encoder 32"
    assert (
        report_text(tiny_pack()).splitlines()[0] == "SafeSteer pack: unnamed (not from Load SafeSteer Pack)"
    )


@pytest.mark.parametrize(
    "value, shown",
    [
        ("org/name", "org/name"),
        ("/home/bob/models/sd15", "local 'sd15'"),
        ("/home/bob/models/sd15/", "local 'sd15'"),
        ("~/models/sdxl", "local 'sdxl'"),
        ("./checkpoints/flux", "local 'flux'"),
        ("C:\\Users\\bob\\models\\sd15", "local 'sd15'"),
        ("D:/models/wan", "local 'wan'"),
    ],
)
def test_local_paths_are_reduced_to_their_last_part(value, shown):
    from comfy_nodes.report_format import without_local_path

    assert without_local_path(value) == shown


# ---------------------------------------------------------------------- the example workflow
def test_the_example_workflow_is_also_where_comfyui_looks_for_examples():
    # One workflow, two places: examples/comfyui/ (documented) and example_workflows/ (ComfyUI's template
    # browser lists custom_nodes/<node>/example_workflows/*.json). Identical bytes, so they cannot diverge.
    assert WORKFLOW_COPY.read_bytes() == WORKFLOW.read_bytes(), (
        f"{WORKFLOW_COPY.relative_to(REPO_ROOT)} differs from {WORKFLOW.relative_to(REPO_ROOT)}: edit the latter, "
        f"then cp {WORKFLOW.relative_to(REPO_ROOT)} {WORKFLOW_COPY.relative_to(REPO_ROOT)}"
    )
    assert sorted(p.name for p in WORKFLOW_COPY.parent.iterdir()) == [WORKFLOW.name]


def _ui_nodes() -> dict[int, dict]:
    return {node["id"]: node for node in json.loads(WORKFLOW.read_text())["nodes"]}


def test_the_example_note_says_the_shipped_pack_fits_no_checkpoint_and_how_to_get_one():
    from comfy_nodes.pack_nodes import SHIPPED_PACKS

    nodes = _ui_nodes()
    (note,) = [n["widgets_values"][0] for n in nodes.values() if n["type"] == "Note"]
    shipped = sorted(SHIPPED_PACKS.rglob("*.safetensors"))
    assert [p.parent.name for p in shipped] == ["tiny-sd-demo-from-minilm"]
    assert DirectionPack.from_file(shipped[0]).spaces == {"text_encoder": 64}
    assert "tiny-sd-demo-from-minilm, is 64-d" in note and "no real checkpoint can use it" in note
    assert "safesteer list-packs" in note and "hub_repo_id" in note
    recipes = re.findall(r"safesteer build --recipe (pretrained_directions/(\S+)/recipe\.yaml)", note)
    assert recipes, note
    for path, _ in recipes:
        assert (REPO_ROOT / path).is_file(), path
    # The pack the loader names is the one that build writes (listed after a refresh).
    (loader,) = [n for n in nodes.values() if n["type"] == "LoadSafeSteerPack"]
    assert loader["widgets_values"][0] == f"{recipes[0][1]}/safesteer_pack.safetensors"
    assert f"pretrained_directions/{recipes[0][1]}/safesteer_pack.safetensors" in note


def _rect(node: dict, height: float | None = None) -> tuple[float, float, float, float]:
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - TITLE_HEIGHT, x + w, y + (h if height is None else height)


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_the_example_layout_has_no_overlaps_and_room_for_the_report():
    nodes = _ui_nodes()
    for first in nodes.values():
        for second in nodes.values():
            if first["id"] < second["id"]:
                assert not _overlap(_rect(first), _rect(second)), (first.get("title"), second.get("title"))
    # After a run the report node grows to show its text (up to MAX_HEIGHT, at least 420 wide): that space
    # stays free, so the text never covers the note or another node.
    max_height = int(re.search(r"const MAX_HEIGHT = (\d+);", REPORT_JS.read_text())[1])
    (report,) = [n for n in nodes.values() if n["type"] == "SafeSteerReport"]
    x, top, right, _ = _rect(report, max_height)
    grown = (x, top, max(right, x + 420), report["pos"][1] + max_height)
    for node in nodes.values():
        if node is not report:
            assert not _overlap(grown, _rect(node)), node.get("title", node["type"])


def test_the_safesteer_nodes_are_sized_to_their_widgets():
    # LiteGraph's minimum height (LGraphNode.computeSize, as scripts/comfyui_screenshot.py --print-sizes
    # reports it): 20 per slot row, 24 per widget plus 8, plus 6. A node much taller than that shows an empty
    # block under its last widget.
    from comfy_nodes import NODE_CLASS_MAPPINGS

    for node in _ui_nodes().values():
        if node["type"] not in OUR_NODES:
            continue
        cls = NODE_CLASS_MAPPINGS[node["type"]]
        widgets = widget_inputs(cls)
        links = [
            name
            for section in ("required", "optional")
            for name in cls.INPUT_TYPES().get(section, {})
            if name not in widgets
        ]
        rows = max(len(links), len(cls.RETURN_TYPES))
        expected = 20 * rows + (24 * len(widgets) + 8 if widgets else 0) + 6
        assert expected <= node["size"][1] <= expected + 10, (node["type"], node["size"], expected)
