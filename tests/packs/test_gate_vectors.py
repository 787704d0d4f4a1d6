"""Gate vectors in packs: stored beside their thresholds, validated like every tensor, kept by algebra only
where the gate stays meaningful, and used by the steering plan in place of the direction's unsafe side."""

from __future__ import annotations

import pytest
import torch

from safesteer_diffusers import DirectionPack, InvalidPackError
from safesteer_diffusers.steering.config import SteeringConfig
from safesteer_diffusers.steering.layout import SpaceLayout
from safesteer_diffusers.steering.plan import SteeringPlan

SPACE = "text_encoder"


def gated_pack(gate_vector=None, thresholds=None):
    return DirectionPack.from_tensors(
        {"global": {SPACE: torch.tensor([0.0, 0.0, 2.0])}},
        thresholds=thresholds if thresholds is not None else {"global": {SPACE: 1.0}},
        gate_vectors={
            "global": {SPACE: gate_vector if gate_vector is not None else torch.tensor([1.0, 0, 0])}
        },
    )


def test_gate_vectors_round_trip_and_are_read_back_exactly(tmp_path):
    pack = gated_pack(torch.tensor([0.25, -3.0, 1e-3]))
    loaded = DirectionPack.from_file(pack.save_file(tmp_path / "p.safetensors"))
    assert loaded.equals(pack)
    assert torch.equal(loaded.gate_vector("global", SPACE), torch.tensor([0.25, -3.0, 1e-3]))
    assert DirectionPack.from_tensors({"global": {SPACE: torch.ones(3)}}).gate_vector("global", SPACE) is None
    with pytest.raises(ValueError, match="Unknown direction"):
        pack.gate_vector("violence", SPACE)


@pytest.mark.parametrize(
    ("gate_vector", "thresholds", "message"),
    [
        (torch.tensor([1.0, 0.0]), None, "dimension 2"),
        (torch.zeros(3), None, "all zeros"),
        (torch.tensor([float("nan"), 0.0, 1.0]), None, "NaN|finite"),
        (torch.tensor([1.0, 0.0, 0.0]), {}, "no gate threshold"),
        (torch.tensor([1, 0, 0], dtype=torch.int64), None, "floating-point"),
    ],
)
def test_invalid_gate_vectors_are_refused_with_the_reason(gate_vector, thresholds, message):
    with pytest.raises(InvalidPackError, match=message):
        gated_pack(gate_vector, thresholds)


def test_a_gate_vector_file_tensor_without_its_threshold_is_refused(tmp_path):
    """A file whose threshold was dropped (and re-hashed, so the integrity check passes) still fails."""
    import json
    import struct

    from safetensors.torch import load_file, save_file

    from safesteer_diffusers.packs.format import HASH_KEY
    from safesteer_diffusers.packs.integrity import content_hash

    path = gated_pack().save_file(tmp_path / "p.safetensors")
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])["__metadata__"]
    tensors = load_file(path)
    del tensors["gate.global.text_encoder"], header[HASH_KEY]
    header[HASH_KEY] = content_hash(tensors, header)
    save_file(tensors, path, metadata=header)
    with pytest.raises(InvalidPackError, match="no gate threshold"):
        DirectionPack.from_file(path)


def test_algebra_keeps_gate_vectors_only_where_the_gate_still_holds():
    pack = gated_pack()
    assert torch.equal((2.0 * pack).gate_vector("global", SPACE), pack.gate_vector("global", SPACE))
    assert (-pack).gate_vector("global", SPACE) is None and not (-pack).has_gate
    assert (pack + pack).gate_vector("global", SPACE) is None


def test_the_plan_scores_along_the_gate_vector_not_the_direction():
    """Known answer: rows' mean states . [1, 0, 0] are 2.0 and 0.5 against threshold 1.0, so only row 0 fires,
    although both rows sit at the same (safe-side) projection on the steering direction [0, 0, 2]."""
    pack = gated_pack()
    plan = SteeringPlan(pack, [SpaceLayout(SPACE, 3)], SteeringConfig(strength=1.5, gate=True))
    hidden = torch.tensor([[[2.0, 0.0, 1.0], [2.0, 0.0, 1.0]], [[0.5, 0.0, 1.0], [0.5, 0.0, 1.0]]])
    result = plan.steer_positive(hidden, None, ["a", "b"])
    steered = result.apply(hidden)
    assert torch.equal(steered[0], hidden[0] + 1.5 * torch.tensor([0.0, 0.0, 2.0]))
    assert torch.equal(steered[1], hidden[1])  # below threshold: untouched bit for bit
    assert result.positions[0].all() and not result.positions[1].any()
    # Without the gate vector the same pack gates on the direction's unsafe side: -1.0 for both rows.
    classic = DirectionPack.from_tensors(
        {"global": {SPACE: torch.tensor([0.0, 0.0, 2.0])}}, thresholds={"global": {SPACE: -1.5}}
    )
    plan = SteeringPlan(classic, [SpaceLayout(SPACE, 3)], SteeringConfig(strength=1.5, gate=True))
    assert plan.steer_positive(hidden, None, ["a", "b"]).positions.all()


SOURCE_GATE_INFO = {"layer": 2, "pooling": "mean", "chat_template": False, "dim": 4, "quantile": 0.99}


def source_gated_pack(vectors=None, thresholds=None, info=SOURCE_GATE_INFO):
    vectors = {"global": torch.tensor([1.0, 0.0, -2.0, 0.5])} if vectors is None else vectors
    thresholds = {"global": 0.25} if thresholds is None else thresholds
    metadata = {} if info is None else {"source_gate": info}
    return DirectionPack.from_tensors(
        {"global": {SPACE: torch.tensor([0.0, 0.0, 2.0])}},
        source_gate_tensors=(vectors, thresholds),
        **metadata,
    )


def test_a_source_gate_round_trips_and_is_dropped_where_it_no_longer_holds(tmp_path):
    pack = source_gated_pack()
    loaded = DirectionPack.from_file(pack.save_file(tmp_path / "p.safetensors"))
    assert loaded.equals(pack) and loaded.has_source_gate
    vector, threshold = loaded.source_gate("global")
    assert torch.equal(vector, torch.tensor([1.0, 0.0, -2.0, 0.5])) and threshold == 0.25
    assert (3.0 * pack).has_source_gate
    for derived in (-pack, pack + pack):
        assert not derived.has_source_gate and "source_gate" not in derived.metadata


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"thresholds": {"global": 0.1, "sexual": 0.2}}, "each direction needs both"),
        ({"vectors": {"global": torch.zeros(4)}}, "all zeros"),
        ({"vectors": {"violence": torch.ones(4)}, "thresholds": {"violence": 0.1}}, "names no direction"),
        ({"info": None}, "needs both its tensors"),
        ({"info": {**SOURCE_GATE_INFO, "dim": 5}}, "source_gate.dim is 5"),
        ({"info": {**SOURCE_GATE_INFO, "pooling": "max"}}, "source_gate.pooling"),
        ({"thresholds": {"global": float("inf")}}, "finite"),
    ],
)
def test_invalid_source_gates_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(InvalidPackError, match=message):
        source_gated_pack(**kwargs)


def fpr_pack(table, **extra):
    return DirectionPack.from_tensors(
        {"global": {SPACE: torch.tensor([0.0, 0.0, 2.0])}},
        thresholds={"global": {SPACE: 1.0}},
        gate={"quantile": 0.99, "fpr_thresholds": table},
        **extra,
    )


def test_thresholds_per_false_positive_rate_are_read_by_rate(tmp_path):
    pack = fpr_pack({"0.01": {"global": {SPACE: 1.0}}, "0.05": {"global": {SPACE: 0.25}}})
    assert pack.gate_fprs == [0.01, 0.05]
    assert pack.threshold("global", SPACE, 0.05) == 0.25 and pack.threshold("global", SPACE) == 1.0
    assert pack.threshold("global", SPACE, 0.02) is None
    loaded = DirectionPack.from_file(pack.save_file(tmp_path / "p.safetensors"))
    assert loaded.threshold("global", SPACE, 0.05) == 0.25
    for derived in (-pack, pack + pack):  # thresholds that no longer hold go with the defaults
        assert derived.gate_fprs == [] and derived.threshold("global", SPACE, 0.05) is None
    assert (2.0 * pack).threshold("global", SPACE, 0.05) == 0.25


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"1%": {"global": {SPACE: 1.0}}}, "gate.fpr_thresholds"),
        ({"0.01": {"global": {SPACE: float("nan")}}}, "gate.fpr_thresholds"),
        ({"0.01": {"violence": {SPACE: 1.0}}}, "names a direction or space"),
        ({"0.01": {"global": {"text_encoder_2": 1.0}}}, "names a direction or space"),
    ],
)
def test_bad_false_positive_rate_tables_are_refused(table, message):
    with pytest.raises(InvalidPackError, match=message):
        fpr_pack(table)


def test_the_plan_gates_with_the_thresholds_of_the_asked_rate():
    pack = DirectionPack.from_tensors(
        {"global": {SPACE: torch.tensor([0.0, 0.0, 2.0])}},
        thresholds={"global": {SPACE: 1.0}},
        gate_vectors={"global": {SPACE: torch.tensor([1.0, 0.0, 0.0])}},
        gate={"fpr_thresholds": {"0.01": {"global": {SPACE: 1.0}}, "0.1": {"global": {SPACE: 0.25}}}},
    )
    hidden = torch.tensor([[[0.5, 0.0, 1.0]]])  # score 0.5: below the default 1.0, above the 10% level 0.25
    layout = [SpaceLayout(SPACE, 3)]
    default = SteeringPlan(pack, layout, SteeringConfig(strength=1.0, gate=True))
    assert not default.steer_positive(hidden, None, ["p"]).positions.any()
    loose = SteeringPlan(pack, layout, SteeringConfig(strength=1.0, gate=True, gate_fpr=0.1))
    result = loose.steer_positive(hidden, None, ["p"])
    assert result.positions.all()
    assert result.prompts[0].directions[0].thresholds[SPACE] == 0.25
    with pytest.raises(ValueError, match=r"rates \[0.01, 0.1\]"):
        SteeringPlan(pack, layout, SteeringConfig(strength=1.0, gate=True, gate_fpr=0.05))


@pytest.mark.parametrize(
    ("value", "error"), [(0.0, ValueError), (1.5, ValueError), (True, TypeError), ("0.01", TypeError)]
)
def test_gate_fpr_must_be_a_rate(value, error):
    with pytest.raises(error, match="gate_fpr"):
        SteeringConfig(gate=True, gate_fpr=value)
