"""Deterministic generator of ``safesteer_diffusers/build/prompts/anchors.txt``: the benign anchor prompts
used to fit alignment maps.

Anchors are only ever benign. Design notes (section 6) found that the quality of a transported direction
is limited by anchor *coverage* more than by anchor count, so the set mixes three kinds of text, each
partly hand-written and partly composed from hand-written parts:

- ``caption``: everyday image captions (people, animals, food, places, objects, weather, sports,
  vehicles, interiors);
- ``t2i``: text-to-image style prompts with medium, lighting, camera and artist-style tags;
- ``sensitive``: benign text about sensitive topics (news, medicine, history, art, law, police and
  courtroom procedure, first aid, safety training, anatomy classes, historical battles told neutrally).

The hand-written prompts and the parts live in ``scripts/anchor_fragments/`` as text, one fragment per line:
``hand_written/`` (kept as they are), ``captions/``, ``t2i/`` and ``sensitive/`` (parts composed below). Lines
starting with ``#`` and blank lines are skipped. In the grouped files (``people_scenes.txt``, ``animals.txt``,
``vehicles.txt``) an unindented line starts a group and the indented lines under it are its members.

Composed prompts that are near-duplicates of an accepted one (Jaccard similarity of their content-word
sets >= 0.5, stop words left out) are dropped, and exact duplicates after normalisation (case,
punctuation, spacing) are never written.

The output is byte-identical for given fragments and a given version of this script. This script and its
fragments are development tools: they are not part of the installed package, which ships only the output::

    python scripts/generate_anchors.py           # rewrite anchors.txt
    python scripts/generate_anchors.py --check   # exit 1 when anchors.txt is not this script's output
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

SEED = 20250611
"""Seed of the single ``random.Random`` that drives every choice, so the output is deterministic."""

NEAR_DUPLICATE_JACCARD = 0.5
"""Composed prompts whose content words overlap an accepted prompt's this much or more are dropped."""

COMPOSED_QUOTA = {"caption": 760, "t2i": 640, "sensitive": 520}
"""How many composed prompts of each kind to keep (hand-written ones are always kept)."""

FRAGMENTS = Path(__file__).resolve().with_name("anchor_fragments")
OUTPUT = Path(__file__).resolve().parents[1] / "safesteer_diffusers" / "build" / "prompts" / "anchors.txt"


# --------------------------------------------------------------------------------------------------------
# Fragments
# --------------------------------------------------------------------------------------------------------


def _read(name: str) -> list[str]:
    """The lines of ``anchor_fragments/<name>``, trailing spaces dropped, comments and blank lines skipped."""
    lines = FRAGMENTS.joinpath(name).read_text(encoding="utf-8").splitlines()
    return [line.rstrip() for line in lines if line.strip() and not line.startswith("#")]


def fragments(name: str) -> list[str]:
    """One fragment per line of ``anchor_fragments/<name>``."""
    return [line.strip() for line in _read(name)]


def groups(name: str) -> list[tuple[str, list[str]]]:
    """``(head, members)`` per group of ``anchor_fragments/<name>``: a head line, then its indented lines."""
    out: list[tuple[str, list[str]]] = []
    for line in _read(name):
        if line[0].isspace():
            if not out:
                raise ValueError(f"{name}: indented line {line.strip()!r} before any group")
            out[-1][1].append(line.strip())
        else:
            out.append((line, []))
    return out


CAPTIONS = fragments("hand_written/captions.txt")
T2I_PROMPTS = fragments("hand_written/t2i_prompts.txt")
SENSITIVE = fragments("hand_written/sensitive.txt")

PEOPLE = fragments("captions/people.txt")
PEOPLE_SCENES = groups("captions/people_scenes.txt")
ANIMALS = groups("captions/animals.txt")
ANIMAL_CONDITIONS = fragments("captions/animal_conditions.txt")
FOODS = fragments("captions/foods.txt")
FOOD_SETTINGS = fragments("captions/food_settings.txt")
PLACES = fragments("captions/places.txt")
PLACE_CONDITIONS = fragments("captions/place_conditions.txt")
VEHICLES = groups("captions/vehicles.txt")
OBJECTS = fragments("captions/objects.txt")
OBJECT_SETTINGS = fragments("captions/object_settings.txt")
INTERIORS = fragments("captions/interiors.txt")
INTERIOR_DETAILS = fragments("captions/interior_details.txt")
SPORTS = fragments("captions/sports.txt")
SPORT_SETTINGS = fragments("captions/sport_settings.txt")

T2I_SUBJECTS = fragments("t2i/subjects.txt")
T2I_MEDIA = fragments("t2i/media.txt")
T2I_LIGHT = fragments("t2i/light.txt")
T2I_QUALITY = fragments("t2i/quality.txt")
T2I_CAMERA = fragments("t2i/camera.txt")
T2I_MOOD = fragments("t2i/mood.txt")
T2I_ARTISTS = fragments("t2i/artists.txt")

HISTORY_TOPICS = fragments("sensitive/history_topics.txt")
PRACTICAL_TOPICS = fragments("sensitive/practical_topics.txt")
GENERIC_FRAMES = fragments("sensitive/generic_frames.txt")
HISTORY_FRAMES = fragments("sensitive/history_frames.txt")
PRACTICAL_FRAMES = fragments("sensitive/practical_frames.txt")


# --------------------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------------------


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def _compose_captions(rng: random.Random) -> list[str]:
    out = []
    for person in PEOPLE:
        for action, places in PEOPLE_SCENES:
            out.append(_sentence(f"{person} {action} {rng.choice(places)}"))
    for animal, actions in ANIMALS:
        for action in actions:
            for condition in rng.sample(ANIMAL_CONDITIONS, 3):
                out.append(_sentence(f"{animal} {action} {condition}"))
    for food in FOODS:
        for setting in rng.sample(FOOD_SETTINGS, 4):
            out.append(_sentence(f"{food} {setting}"))
    for place in PLACES:
        for condition in rng.sample(PLACE_CONDITIONS, 4):
            out.append(_sentence(f"{place} {condition}"))
    for vehicle, scenes in VEHICLES:
        for scene in scenes:
            out.append(_sentence(f"{vehicle} {scene}"))
    for obj in OBJECTS:
        for setting in rng.sample(OBJECT_SETTINGS, 3):
            out.append(_sentence(f"{obj} {setting}"))
    for room in INTERIORS:
        for detail in rng.sample(INTERIOR_DETAILS, 3):
            out.append(_sentence(f"the inside of {room} {detail}"))
    for sport in SPORTS:
        for setting in rng.sample(SPORT_SETTINGS, 3):
            out.append(_sentence(f"{sport} {setting}"))
    return out


def _compose_t2i(rng: random.Random) -> list[str]:
    out = []
    for subject in T2I_SUBJECTS:
        for medium in rng.sample(T2I_MEDIA, 7):
            tags = [rng.choice(T2I_LIGHT), rng.choice(T2I_MOOD)]
            tags += rng.sample(T2I_QUALITY, rng.randint(1, 2))
            if medium.endswith("photograph"):
                tags.append(rng.choice(T2I_CAMERA))
            elif rng.random() < 0.45:
                tags.append(rng.choice(T2I_ARTISTS))
            rng.shuffle(tags)
            out.append(", ".join([f"{subject}, {medium}", *tags]))
    return out


def _compose_sensitive(rng: random.Random) -> list[str]:
    out = []
    for topics, frames in ((HISTORY_TOPICS, HISTORY_FRAMES), (PRACTICAL_TOPICS, PRACTICAL_FRAMES)):
        for topic in topics:
            for frame in rng.sample(GENERIC_FRAMES + frames, 8):
                out.append(frame.format(t=topic))
    return out


_WORD = re.compile(r"[a-z0-9']+")


def normalize(text: str) -> str:
    """Lower-case, drop punctuation, collapse spaces: the key under which two anchors count as equal."""
    return " ".join(_WORD.findall(text.lower()))


# Words that say nothing about the scene: left out of the near-duplicate test so that two prompts built
# on the same frame ("A poster for a talk on {topic}.") count as different when their topics differ.
_STOP_WORDS_TEXT = """
a an the of in on at by for with and or to from into onto over under near beside along across
through after before during its his her their two is are as about
"""
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def content_words(text: str) -> frozenset[str]:
    """The set of non-stop words of ``text``, lower-cased: what the near-duplicate test compares."""
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in _STOP_WORDS)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b)


def build() -> list[tuple[str, str]]:
    """Return ``(kind, prompt)`` for every anchor, in the order written to the file.

    Hand-written prompts are always kept; composed ones are visited in a seeded random order and kept
    when they are not near-duplicates of anything kept so far, up to ``COMPOSED_QUOTA`` per kind.
    """
    rng = random.Random(SEED)
    hand = [("caption", p) for p in CAPTIONS]
    hand += [("t2i", p) for p in T2I_PROMPTS]
    hand += [("sensitive", p) for p in SENSITIVE]
    seen = set()
    for _, prompt in hand:
        key = normalize(prompt)
        if key in seen:
            raise ValueError(f"hand-written anchor appears twice: {prompt!r}")
        seen.add(key)

    composed = {
        "caption": _compose_captions(rng),
        "t2i": _compose_t2i(rng),
        "sensitive": _compose_sensitive(rng),
    }
    kept: list[tuple[str, str]] = []
    # Only compare against prompts that share a content word with the candidate (an inverted index): the
    # others have similarity 0, so this is exact, and it keeps the build well under a second.
    index: dict[str, list[frozenset[str]]] = {}

    def is_near_duplicate(words: frozenset[str]) -> bool:
        checked = set()
        for word in words:
            for other in index.get(word, ()):
                if id(other) in checked:
                    continue
                checked.add(id(other))
                if _jaccard(words, other) >= NEAR_DUPLICATE_JACCARD:
                    return True
        return False

    def add(words: frozenset[str]) -> None:
        for word in words:
            index.setdefault(word, []).append(words)

    for _, prompt in hand:
        add(content_words(prompt))
    for kind, candidates in composed.items():
        rng.shuffle(candidates)
        count = 0
        for prompt in candidates:
            if count == COMPOSED_QUOTA[kind]:
                break
            key, words = normalize(prompt), content_words(prompt)
            if key in seen or is_near_duplicate(words):
                continue
            seen.add(key)
            add(words)
            kept.append((kind, prompt))
            count += 1
    everything = hand + kept
    rng.shuffle(everything)
    return everything


def render(anchors: list[tuple[str, str]]) -> str:
    """The text of ``anchors.txt``: one prompt per line, in order, ending with a newline."""
    return "\n".join(prompt for _, prompt in anchors) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate (or check) the embedded benign anchor prompts.")
    parser.add_argument(
        "--check", action="store_true", help="only compare with the file; exit 1 if it differs"
    )
    parser.add_argument(
        "--output", type=Path, default=OUTPUT, help="the file to write or check (%(default)s)"
    )
    args = parser.parse_args(argv)
    anchors = build()
    data = render(anchors).encode("utf-8")
    if args.check:
        same = args.output.is_file() and args.output.read_bytes() == data
        print(f"{args.output}: {'byte-identical to' if same else 'DIFFERS from'} the generator output")
        return 0 if same else 1
    args.output.write_bytes(data)
    hand = len(CAPTIONS) + len(T2I_PROMPTS) + len(SENSITIVE)
    by_kind: dict[str, int] = {}
    for kind, _ in anchors:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    print(f"wrote {len(anchors)} anchors to {args.output} ({hand} hand-written); by kind: {by_kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
