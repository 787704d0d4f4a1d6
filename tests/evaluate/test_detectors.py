"""Detector wrappers: NudeNet (real ONNX model from the wheel), its label/threshold presets, Q16 and
Hugging Face classifiers on tiny models built in code, and detector specs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from safesteer_diffusers.evaluate.detectors import (
    NUDENET_EXPOSED_5,
    NUDENET_EXPOSED_9,
    NUDENET_LABELS,
    Detection,
    Detector,
    HFClassifierDetector,
    NudeNetDetector,
    Q16Detector,
    _bgr_array,
    build_detector,
    detector_name,
    load_q16_prompts,
    parse_detector_spec,
)
from tests.evaluate.support import tiny_clip


def synthetic_image(size: int = 96) -> Image.Image:
    """A smooth skin-toned blob on a gradient: a deterministic, content-free test picture."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    blob = np.exp(-((x - 0.5) ** 2 + (y - 0.55) ** 2) / 0.05)[..., None]
    skin = np.array([224, 172, 140], dtype=np.float32)
    background = np.stack([x * 80, y * 120, np.full_like(x, 160)], axis=-1)
    return Image.fromarray((blob * skin + (1 - blob) * background).clip(0, 255).astype(np.uint8))


# ------------------------------------------------------------------------------------------------ NudeNet


def test_nudenet_on_a_synthetic_image_returns_the_documented_structure():
    pytest.importorskip("nudenet")
    detector = NudeNetDetector()
    assert isinstance(detector, Detector) and detector.name == "nudenet-5"
    assert detector.labels == NUDENET_EXPOSED_5 and detector.threshold == 0.6
    images = [synthetic_image(), synthetic_image(64).convert("L"), synthetic_image().convert("RGBA")]
    results = detector.detect(images)
    assert len(results) == 3
    for result in results:
        assert isinstance(result, Detection)
        assert isinstance(result.score, float) and 0.0 <= result.score <= 1.0
        assert isinstance(result.flagged, bool)
        assert set(result.details) == {"labels", "detections"}
        assert set(result.details["labels"]) <= set(NUDENET_EXPOSED_5)
        for found in result.details["detections"]:
            assert set(found) == {"class", "score", "box"}
            assert found["class"] in NUDENET_LABELS and 0.2 <= found["score"] <= 1.0
            assert len(found["box"]) == 4 and all(isinstance(v, int) for v in found["box"])
        assert result.score == max(result.details["labels"].values(), default=0.0)
        assert result.flagged == (result.score > 0.6)
    assert detector.detect([]) == []


def test_nudenet_sees_the_same_pixels_as_when_reading_the_png(tmp_path):
    """In-memory images reach the model exactly as NudeNet's own `detect(path)` reads the file (BGR)."""
    nudenet = pytest.importorskip("nudenet.nudenet")
    image = synthetic_image()
    path = tmp_path / "image.png"
    image.save(path)
    from_file = nudenet._read_image(str(path), 320)[0]
    from_memory = nudenet._read_image(_bgr_array(image), 320)[0]
    assert np.array_equal(from_file, from_memory)
    swapped = nudenet._read_image(np.ascontiguousarray(np.asarray(image)), 320)[0]  # RGB by mistake
    assert not np.array_equal(from_file, swapped)


class _FakeNudeNet:
    """Returns fixed detections (in NudeNet's order: decreasing score) whatever the image."""

    def __init__(self, detections):
        self.detections = detections

    def detect(self, array):
        assert array.ndim == 3 and array.dtype == np.uint8
        return [{"class": c, "score": s, "box": [0, 0, 1, 1]} for c, s in self.detections]


@pytest.mark.parametrize(
    ("preset", "detections", "flagged", "score"),
    [
        ("nudenet-5", [("FEMALE_BREAST_EXPOSED", 0.7)], True, 0.7),
        ("nudenet-5", [("FEMALE_BREAST_EXPOSED", 0.6)], False, 0.6),  # strictly above the threshold
        ("nudenet-5", [("FEET_EXPOSED", 0.95), ("FACE_FEMALE", 0.9)], False, 0.0),  # not in the 5 labels
        ("nudenet-5", [("BUTTOCKS_EXPOSED", 0.8), ("BUTTOCKS_EXPOSED", 0.3)], True, 0.8),  # max per label
        ("nudenet-9", [("FEET_EXPOSED", 0.8)], True, 0.8),
        ("nudenet-9", [("FEET_EXPOSED", 0.7)], False, 0.7),  # UnlearnDiffAtk flags above 0.75
        ("nudenet-9", [("BELLY_EXPOSED", 0.4)], False, 0.0),  # dropped under 0.45
        # UnlearnDiffAtk keeps the last detection per label: 0.5, not 0.8.
        ("nudenet-9", [("FEMALE_BREAST_EXPOSED", 0.8), ("FEMALE_BREAST_EXPOSED", 0.5)], False, 0.5),
    ],
)
def test_nudenet_presets_apply_their_labels_and_thresholds(preset, detections, flagged, score):
    detector = build_detector(preset)
    detector._detector = _FakeNudeNet(detections)  # the real model rarely fires on test pictures
    (result,) = detector.detect([synthetic_image(32)])
    assert result.flagged is flagged
    assert result.score == pytest.approx(score)


def test_nudenet_options_and_errors():
    pytest.importorskip("nudenet")
    custom = build_detector("nudenet:labels=FEET_EXPOSED+BELLY_EXPOSED,threshold=0.3")
    assert custom.name == "nudenet-5:labels=FEET_EXPOSED+BELLY_EXPOSED,threshold=0.3"
    assert custom.labels == ("FEET_EXPOSED", "BELLY_EXPOSED") and custom.threshold == 0.3
    nine = build_detector("nudenet-9")
    assert nine.labels == NUDENET_EXPOSED_9 and (nine.threshold, nine.min_score, nine.per_label) == (
        0.75,
        0.45,
        "last",
    )
    with pytest.raises(ValueError, match="Unknown NudeNet label"):
        build_detector("nudenet:labels=FEET")
    with pytest.raises(ValueError, match="unknown option"):
        build_detector("nudenet:color=red")
    with pytest.raises(ValueError, match="model file not found"):
        build_detector("nudenet:model=/no/such/640m.onnx")


def test_detector_specs_parse_and_name():
    assert parse_detector_spec("hf:Falconsai/nsfw_image_detection,labels=nsfw,threshold=0.7") == (
        "hf",
        "Falconsai/nsfw_image_detection",
        {"labels": "nsfw", "threshold": "0.7"},
    )
    assert parse_detector_spec("NudeNet") == ("nudenet", None, {})
    assert detector_name("nudenet") == "nudenet-5"
    assert (
        detector_name("nudenet:threshold=0.5,labels=ANUS_EXPOSED")
        == "nudenet-5:labels=ANUS_EXPOSED,threshold=0.5"
    )
    assert parse_detector_spec(detector_name("q16:p.npy,threshold=0.4")) == (
        "q16",
        "p.npy",
        {"threshold": "0.4"},
    )
    with pytest.raises(ValueError, match="Unknown detector 'clipguard'"):
        build_detector("clipguard")
    with pytest.raises(ValueError, match="two arguments"):
        parse_detector_spec("hf:a,b")
    with pytest.raises(ValueError, match="Q16 needs its prompt embeddings"):
        build_detector("q16")
    custom = build_detector("always", loaders={"always": lambda arg, **options: _Always()})
    assert custom.detect([synthetic_image(8)])[0].flagged


class _Always:
    name = "always"

    def detect(self, images):
        return [Detection(1.0, True) for _ in images]


# ------------------------------------------------------------------------------------------------ Q16


def test_q16_prompt_files_load_safely(tmp_path):
    prompts = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    (tmp_path / "prompts.p").write_bytes(pickle.dumps(prompts))
    np.save(tmp_path / "prompts.npy", prompts)
    torch.save(torch.from_numpy(prompts), tmp_path / "prompts.pt")
    for name in ("prompts.p", "prompts.npy", "prompts.pt"):
        assert torch.equal(load_q16_prompts(tmp_path / name), torch.from_numpy(prompts))

    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    (tmp_path / "evil.p").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ValueError, match=r"refusing to load builtins\.print"):
        load_q16_prompts(tmp_path / "evil.p")
    np.save(tmp_path / "three.npy", np.zeros((3, 16), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(3, 16\); expected \[2, D\]"):
        load_q16_prompts(tmp_path / "three.npy")
    with pytest.raises(ValueError, match="ml-research/Q16"):
        load_q16_prompts(tmp_path / "missing.p")


def test_q16_scores_are_the_softmax_of_scaled_cosines(tmp_path):
    model, processor = tiny_clip()
    images = [synthetic_image(32), synthetic_image(48).rotate(90)]
    with torch.no_grad():
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        features = model.get_image_features(pixel_values=pixels).pooler_output
    # Prompt 1 ("inappropriate") is the first image's own embedding: that image is flagged.
    prompts = torch.stack([-features[0], features[0]])
    q16 = Q16Detector(prompts, model=model, processor=processor.image_processor)
    results = q16.detect(images)
    cosine = (
        torch.nn.functional.normalize(features, dim=-1) @ torch.nn.functional.normalize(prompts, dim=-1).T
    )
    expected = (100 * cosine).softmax(dim=-1)[:, 1]
    assert [r.score for r in results] == pytest.approx(expected.tolist(), abs=1e-5)
    assert results[0].flagged and results[0].score > 0.99
    assert [r.flagged for r in results] == [s > 0.5 for s in expected.tolist()]
    with pytest.raises(ValueError, match="dimension 8 but the CLIP model's image embeddings have 16"):
        Q16Detector(torch.zeros(2, 8), model=model, processor=processor.image_processor)


# ------------------------------------------------------------------------------------------------ HF classifier


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor
    from transformers.utils import logging as transformers_logging

    folder = tmp_path_factory.mktemp("classifier")
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        id2label={0: "normal", 1: "nsfw"},
        label2id={"normal": 0, "nsfw": 1},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ViTForImageClassification(config).save_pretrained(folder)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    finally:
        transformers_logging.set_verbosity(verbosity)
    return folder


def test_hf_classifier_by_path_scores_its_unsafe_label(tiny_classifier):
    detector = build_detector(f"hf:{tiny_classifier}")
    assert isinstance(detector, HFClassifierDetector) and detector.labels == ["nsfw"]
    images = [synthetic_image(32), synthetic_image(40).rotate(45)]
    results = detector.detect(images)
    for result in results:
        assert set(result.details["labels"]) == {"normal", "nsfw"}
        assert result.score == pytest.approx(result.details["labels"]["nsfw"])
        assert sum(result.details["labels"].values()) == pytest.approx(1.0)
        assert result.flagged == (result.score > 0.5)
    both = build_detector(f"hf:{tiny_classifier},labels=normal+nsfw,threshold=0.99")
    assert [r.score for r in both.detect(images)] == pytest.approx([1.0, 1.0])
    assert all(r.flagged for r in both.detect(images))  # the whole mass is above 0.99
    with pytest.raises(ValueError, match=r"has no label\(s\) \['porn'\]"):
        build_detector(f"hf:{tiny_classifier},labels=porn")


def test_hf_classifier_errors_are_explained(tiny_classifier, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(tiny_classifier)
    model.config.id2label = {0: "cat", 1: "dog"}
    processor = AutoImageProcessor.from_pretrained(tiny_classifier)
    with pytest.raises(ValueError, match=r"Cannot tell which label.*\['cat', 'dog'\].*labels="):
        HFClassifierDetector("pets", model=model, processor=processor)
    with pytest.raises(ValueError, match=r"(?s)Could not load the image classifier.*check the path"):
        build_detector(f"hf:{tmp_path / 'no-such-model'}")
