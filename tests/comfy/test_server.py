"""Server level: the ComfyUI snapshot's own server, started on CPU with this repository in custom_nodes/.

Checks what the web page gets (``/object_info`` with a tooltip for every input, ``/extensions``), that a pack
that cannot be found is refused once when the graph is queued, and that a node error is reported for that node
while the rest of the graph keeps its output.
"""

from __future__ import annotations

import time

import pytest

from tests.comfy.support import (
    NODE_FOLDER_NAME,
    OUR_NODES,
    ComfyServer,
    copy_snapshot,
    http_json,
    post_json,
    require_snapshot,
    tiny_pack,
)

PACK_FILE = "tiny/safesteer_pack.safetensors"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    source = require_snapshot()
    base = tmp_path_factory.mktemp("comfy_server")
    root = copy_snapshot(source, base / "ComfyUI")
    packs = root / "models" / "safesteer"
    tiny_pack().save_pretrained(packs / "tiny")
    with ComfyServer(root, base / "server.log") as running:
        running.packs = packs
        yield running


def test_object_info_lists_our_nodes_with_inputs_and_types(server):
    info = http_json(server.url + "/object_info")
    assert set(OUR_NODES) <= set(info), server.log()
    for name in OUR_NODES:
        assert info[name]["category"] == "safesteer"
    load = info["LoadSafeSteerPack"]
    assert load["display_name"] == "Load SafeSteer Pack"
    assert load["output"] == ["SAFESTEER_PACK"]
    assert PACK_FILE in load["input"]["required"]["pack_name"][0]
    assert load["input"]["optional"]["hub_repo_id"][0] == "STRING"

    model = info["SafeSteerModel"]
    assert model["display_name"] == "SafeSteer Model" and model["output"] == ["MODEL"]
    required = model["input"]["required"]
    # Link inputs come with their tooltip: ["MODEL", {"tooltip": ...}].
    assert required["model"][0] == "MODEL" and required["pack"][0] == "SAFESTEER_PACK"
    for key in (
        "strength",
        "hate",
        "harassment",
        "violence",
        "self_harm",
        "sexual",
        "shocking",
        "illegal_activity",
    ):
        assert required[key][0] == "FLOAT", key
        # The widgets stop at the library's bound and at 0 (no steering toward the unsafe side).
        assert (required[key][1]["min"], required[key][1]["max"]) == (0.0, 20.0), key
    assert required["mode"][0] == ["add", "project"] and required["gate"][0] == "BOOLEAN"
    assert required["start_percent"][0] == "FLOAT" and required["end_percent"][0] == "FLOAT"

    cond = info["SafeSteerConditioning"]
    assert cond["display_name"] == "SafeSteer Conditioning" and cond["output"] == ["CONDITIONING"]
    assert cond["input"]["required"]["conditioning"][0] == "CONDITIONING"
    assert cond["input"]["required"]["sexual"][0] == "FLOAT"

    report = info["SafeSteerReport"]
    assert report["output_node"] is True and report["output"] == ["STRING"]
    assert report["input"]["optional"]["conditioning"][0] == "CONDITIONING"

    extensions = http_json(server.url + "/extensions")
    assert f"/extensions/{NODE_FOLDER_NAME}/safesteer_report.js" in extensions


def test_a_failing_node_is_reported_and_the_other_output_is_kept(server):
    before = sorted(p.name for p in server.packs.iterdir())
    graph = {
        "1": {"class_type": "LoadSafeSteerPack", "inputs": {"pack_name": PACK_FILE}},
        "2": {"class_type": "SafeSteerReport", "inputs": {"pack": ["1", 0]}},
        "3": {
            "class_type": "LoadSafeSteerPack",
            "inputs": {"pack_name": PACK_FILE, "hub_repo_id": "nobody/missing-pack", "revision": ""},
        },
        "4": {"class_type": "SafeSteerReport", "inputs": {"pack": ["3", 0]}},
    }
    queued = http_json(server.url + "/prompt", {"prompt": graph})
    assert not queued.get("node_errors"), queued
    prompt_id = queued["prompt_id"]
    deadline, entry = time.monotonic() + 60, None
    while entry is None and time.monotonic() < deadline:
        time.sleep(0.3)
        entry = http_json(f"{server.url}/history/{prompt_id}").get(prompt_id)  # present once finished
    assert entry is not None, server.log()
    # The healthy branch produced its text (which starts with the readable pack header, not a repr).
    assert entry["outputs"]["2"]["text"][0].startswith(f"SafeSteer pack: {PACK_FILE}\n")
    errors = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert len(errors) == 1, entry["status"]
    assert errors[0]["node_id"] == "3" and errors[0]["node_type"] == "LoadSafeSteerPack"
    assert "cannot be reached" in errors[0]["exception_message"]
    assert sorted(p.name for p in server.packs.iterdir()) == before  # nothing left behind
    assert http_json(server.url + "/object_info/SafeSteerReport")  # the server is still serving


def test_object_info_serves_a_tooltip_for_every_input(server):
    info = http_json(server.url + "/object_info")
    for name in OUR_NODES:
        for section, inputs in info[name]["input"].items():
            for input_name, spec in inputs.items():
                assert len(spec) == 2 and spec[1].get("tooltip"), (name, section, input_name)


def test_a_pack_that_cannot_be_found_is_refused_once_when_queued(server):
    graph = {
        "1": {
            "class_type": "LoadSafeSteerPack",
            "inputs": {"pack_name": "gone/safesteer_pack.safetensors", "hub_repo_id": "", "revision": ""},
        },
        "2": {"class_type": "SafeSteerReport", "inputs": {"pack": ["1", 0]}},
        "3": {"class_type": "SafeSteerReport", "inputs": {"pack": ["1", 0]}},
    }
    status, body = post_json(server.url + "/prompt", {"prompt": graph})
    assert status == 400, body
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    # One error, on the loader (not one per input of VALIDATE_INPUTS, nor one per node that uses the pack).
    assert set(body["node_errors"]) == {"1"}, body["node_errors"]
    (problem,) = body["node_errors"]["1"]["errors"]
    assert "Pack file 'gone/safesteer_pack.safetensors' was not found in" in problem["details"]
    assert str(server.packs) in problem["details"]
    assert sorted(body["node_errors"]["1"]["dependent_outputs"]) == ["2", "3"]
    assert http_json(server.url + "/object_info/SafeSteerReport")  # the server is still serving
