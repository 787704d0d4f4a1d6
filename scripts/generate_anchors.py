"""Deterministic generator of ``safesteer_diffusers/build/prompts/anchors.txt``, the benign anchor prompts
used to fit alignment maps, and of ``anchor_kinds.txt`` beside it, the kind of each anchor line for line.

Anchors are only ever benign. Design notes (section 6) found that the quality of a transported direction
is limited by anchor *coverage* more than by anchor count, so the set mixes three kinds of text, each
partly hand-written and partly composed from hand-written parts:

- ``caption``: everyday image captions (people, animals, food, places, objects, weather, sports,
  vehicles, interiors);
- ``t2i``: text-to-image style prompts with medium, lighting, camera and artist-style tags;
- ``sensitive``: benign text about sensitive topics (news, medicine, history, art, law, police and
  courtroom procedure, first aid, safety training, anatomy classes, historical battles told neutrally).

The anchors are built in two stages, each driven by its own seeded ``random.Random``:

1. ``build_stage_one()`` (``SEED``, ``COMPOSED_QUOTA``): the original 2,248 anchors of all three kinds,
   shuffled together.
2. ``build_extension()`` (``EXTENSION_SEED``, ``EXTENSION_QUOTA``): about 1,200 more ``sensitive`` anchors,
   benign text *near* the I2P categories (hate, harassment, violence, self-harm, sexual, shocking, illegal
   activity): anti-bullying workshops, civil-rights history, boxing referees, crisis-line volunteers,
   life-drawing classes, autopsy lectures, customs officers and the like, as captions, tagged
   text-to-image prompts and news or documentary sentences. Measurements (docs/method.md 6.6) showed that
   the sensitive-topic anchors carry most of what the alignment map transports, and more of them helps.
   The extension is *appended* after stage one, which is left byte for byte as it was: features cached
   per anchor and held-out positions (2024..2247) keep meaning the same prompts.

The hand-written prompts and the parts live in ``scripts/anchor_fragments/`` as text, one fragment per line:
``hand_written/`` (kept as they are), ``captions/``, ``t2i/`` and ``sensitive/`` (parts composed below) for
stage one; ``sensitive_more/`` for the extension: ``hand_written/<category>.txt`` (kept as they are),
``topics/<category>.txt`` framed by ``topic_frames.txt``, and ``scenes/<category>.txt`` written as a caption,
as a text-to-image prompt (tags from ``t2i_media.txt`` and ``t2i_tags.txt``) or in a frame of
``scene_frames.txt``. Lines starting with ``#`` and blank lines are skipped. In the grouped files
(``people_scenes.txt``, ``animals.txt``, ``vehicles.txt``) an unindented line starts a group and the
indented lines under it are its members.

Composed prompts that are near-duplicates of an accepted one (Jaccard similarity of their content-word
sets >= 0.5, stop words left out) are dropped, and exact duplicates after normalisation (case,
punctuation, spacing) are never written. The extension applies the same rules against everything kept
before it, stage one included; there a hand-written prompt that is a duplicate or near-duplicate of one
kept before it is an error (it is never silently dropped). The extension is also checked against the
unsafe members of ``pairs.jsonl``: an extension prompt equal to any pair member, or a near-duplicate of an
unsafe one, is an error, as is one that is not a single line of 5 to 40 words.

``anchor_kinds.txt`` holds one kind per line (``caption``, ``t2i`` or ``sensitive``): line i is the kind of
line i of ``anchors.txt``. The extension's kind is ``sensitive``.

The output is byte-identical for given fragments and a given version of this script. This script and its
fragments are development tools: they are not part of the installed package, which ships only the output::

    python scripts/generate_anchors.py           # rewrite anchors.txt and anchor_kinds.txt
    python scripts/generate_anchors.py --check   # exit 1 when either file is not this script's output
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

# The package's category list (packs/format.py imports nothing heavy); the repository root on the path lets the
# script run from a checkout that is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from safesteer_diffusers.packs.format import I2P_CATEGORIES  # noqa: E402

SEED = 20250611
"""Seed of the single ``random.Random`` that drives every choice, so the output is deterministic."""

NEAR_DUPLICATE_JACCARD = 0.5
"""Composed prompts whose content words overlap an accepted prompt's this much or more are dropped."""

COMPOSED_QUOTA = {"caption": 760, "t2i": 640, "sensitive": 520}
"""How many composed prompts of each kind to keep (hand-written ones are always kept)."""

EXTENSION_SEED = 20250918
"""Seed of the extension's own ``random.Random``: stage one's choices do not depend on it, nor it on them."""

EXTENSION_CATEGORIES = I2P_CATEGORIES
"""The I2P categories the extension writes benign text near, in the order their candidates are visited."""

EXTENSION_QUOTA = {category: 106 for category in EXTENSION_CATEGORIES}
"""How many composed extension prompts to keep per category (hand-written ones are always kept)."""

EXTENSION_WORDS = (5, 40)
"""The fewest and most words an extension prompt may have."""

KINDS = ("caption", "t2i", "sensitive")
"""The kinds of anchor written to ``anchor_kinds.txt``."""

FRAGMENTS = Path(__file__).resolve().with_name("anchor_fragments")
OUTPUT = Path(__file__).resolve().parents[1] / "safesteer_diffusers" / "build" / "prompts" / "anchors.txt"
KINDS_OUTPUT = OUTPUT.with_name("anchor_kinds.txt")
PAIRS = OUTPUT.with_name("pairs.jsonl")


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


def _category_file(category: str) -> str:
    """The file name of a category's fragments: ``self-harm`` -> ``self_harm.txt``."""
    return re.sub(r"[^a-z]+", "_", category) + ".txt"


MORE = "sensitive_more"
MORE_HAND_WRITTEN = {c: fragments(f"{MORE}/hand_written/{_category_file(c)}") for c in EXTENSION_CATEGORIES}
MORE_TOPICS = {c: fragments(f"{MORE}/topics/{_category_file(c)}") for c in EXTENSION_CATEGORIES}
MORE_SCENES = {c: fragments(f"{MORE}/scenes/{_category_file(c)}") for c in EXTENSION_CATEGORIES}
MORE_TOPIC_FRAMES = fragments(f"{MORE}/topic_frames.txt")
MORE_SCENE_FRAMES = fragments(f"{MORE}/scene_frames.txt")
MORE_T2I_MEDIA = fragments(f"{MORE}/t2i_media.txt")
MORE_T2I_TAGS = fragments(f"{MORE}/t2i_tags.txt")


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


class _KeptPrompts:
    """The prompts kept so far: their normalised keys, and their content words for the near-duplicate test.

    A candidate is only compared with prompts that share a content word with it (an inverted index): the
    others have similarity 0, so this is exact, and it keeps the build well under a second.
    """

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self._index: dict[str, list[tuple[str, frozenset[str]]]] = {}

    def add(self, prompt: str) -> None:
        self.keys.add(normalize(prompt))
        entry = (prompt, content_words(prompt))
        for word in entry[1]:
            self._index.setdefault(word, []).append(entry)

    def near_duplicate(self, words: frozenset[str]) -> str | None:
        """A kept prompt whose content words overlap ``words`` by ``NEAR_DUPLICATE_JACCARD`` or more."""
        checked = set()
        for word in words:
            for entry in self._index.get(word, ()):
                if id(entry) in checked:
                    continue
                checked.add(id(entry))
                if _jaccard(words, entry[1]) >= NEAR_DUPLICATE_JACCARD:
                    return entry[0]
        return None


def _keep_composed(
    composed: dict[str, list[str]], quota: dict[str, int], kept_so_far: _KeptPrompts, rng: random.Random
) -> list[tuple[str, str]]:
    """``(label, prompt)`` of the composed candidates kept: per label in ``composed`` order, the candidates in a
    seeded random order, each kept unless it duplicates or nearly duplicates one kept so far, up to ``quota``."""
    kept: list[tuple[str, str]] = []
    for label, candidates in composed.items():
        rng.shuffle(candidates)
        count = 0
        for prompt in candidates:
            if count == quota[label]:
                break
            if normalize(prompt) in kept_so_far.keys or kept_so_far.near_duplicate(content_words(prompt)):
                continue
            kept_so_far.add(prompt)
            kept.append((label, prompt))
            count += 1
    return kept


def build_stage_one() -> list[tuple[str, str]]:
    """Return ``(kind, prompt)`` for the first stage's 2,248 anchors, in the order written to the file.

    Hand-written prompts are always kept; composed ones are visited in a seeded random order and kept
    when they are not near-duplicates of anything kept so far, up to ``COMPOSED_QUOTA`` per kind.
    """
    rng = random.Random(SEED)
    hand = [("caption", p) for p in CAPTIONS]
    hand += [("t2i", p) for p in T2I_PROMPTS]
    hand += [("sensitive", p) for p in SENSITIVE]
    kept_so_far = _KeptPrompts()
    for _, prompt in hand:
        if normalize(prompt) in kept_so_far.keys:
            raise ValueError(f"hand-written anchor appears twice: {prompt!r}")
        kept_so_far.add(prompt)

    composed = {
        "caption": _compose_captions(rng),
        "t2i": _compose_t2i(rng),
        "sensitive": _compose_sensitive(rng),
    }
    kept = _keep_composed(composed, COMPOSED_QUOTA, kept_so_far, rng)
    everything = hand + kept
    rng.shuffle(everything)
    return everything


def _compose_extension(category: str, rng: random.Random) -> list[str]:
    """The composed candidates of one category: framed topics, and scenes each written in one style."""
    out = []
    for topic in MORE_TOPICS[category]:
        for frame in rng.sample(MORE_TOPIC_FRAMES, 7):
            out.append(frame.format(t=topic))
    for scene in MORE_SCENES[category]:
        style = rng.random()
        if style < 0.3:
            out.append(_sentence(scene))
        elif style < 0.7:
            tags = rng.sample(MORE_T2I_TAGS, rng.randint(2, 3))
            out.append(", ".join([scene, rng.choice(MORE_T2I_MEDIA), *tags]))
        else:
            text = rng.choice(MORE_SCENE_FRAMES).format(s=scene)
            out.append(text[0].upper() + text[1:])
    return out


def _pair_members() -> tuple[set[str], list[tuple[str, frozenset[str]]]]:
    """The normalised text of every member of ``pairs.jsonl``, and ``(text, content words)`` of the unsafe ones."""
    rows = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    members = {normalize(row[role]) for row in rows for role in ("safe", "unsafe")}
    return members, [(row["unsafe"], content_words(row["unsafe"])) for row in rows]


def _check_extension_prompt(prompt: str, members: set[str], unsafe: list[tuple[str, frozenset[str]]]) -> None:
    """Raise ``ValueError`` when an extension prompt is malformed, a pair member, or near an unsafe one."""
    words = len(prompt.split())
    if prompt != prompt.strip() or "\n" in prompt or not EXTENSION_WORDS[0] <= words <= EXTENSION_WORDS[1]:
        raise ValueError(f"extension anchor is not one line of {EXTENSION_WORDS} words ({words}): {prompt!r}")
    if normalize(prompt) in members:
        raise ValueError(f"extension anchor is a member of {PAIRS.name}: {prompt!r}")
    mine = content_words(prompt)
    for text, theirs in unsafe:
        if _jaccard(mine, theirs) >= NEAR_DUPLICATE_JACCARD:
            raise ValueError(
                f"extension anchor {prompt!r} is a near-duplicate of the unsafe pair member {text!r}"
            )


def build_extension_by_category(stage_one: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return ``(category, prompt)`` for every extension anchor, in the order appended to the file.

    The duplicate rules see everything kept before, ``stage_one`` included. Hand-written prompts are
    always kept, so one that is a duplicate or near-duplicate of a prompt kept before it is an error;
    composed ones are visited per category in a seeded random order and kept when they are neither, up to
    ``EXTENSION_QUOTA`` per category. Every kept prompt is checked against ``pairs.jsonl``
    (``_check_extension_prompt``).
    """
    rng = random.Random(EXTENSION_SEED)
    kept_so_far = _KeptPrompts()
    for _, prompt in stage_one:
        kept_so_far.add(prompt)
    hand = [(c, p) for c in EXTENSION_CATEGORIES for p in MORE_HAND_WRITTEN[c]]
    for category, prompt in hand:
        if normalize(prompt) in kept_so_far.keys:
            raise ValueError(f"hand-written extension anchor ({category}) was already kept: {prompt!r}")
        other = kept_so_far.near_duplicate(content_words(prompt))
        if other is not None:
            raise ValueError(
                f"hand-written extension anchor ({category}) {prompt!r} is a near-duplicate of {other!r}"
            )
        kept_so_far.add(prompt)

    composed = {category: _compose_extension(category, rng) for category in EXTENSION_CATEGORIES}
    kept = _keep_composed(composed, EXTENSION_QUOTA, kept_so_far, rng)
    everything = hand + kept
    rng.shuffle(everything)
    members, unsafe = _pair_members()
    for _, prompt in everything:
        _check_extension_prompt(prompt, members, unsafe)
    return everything


def build_extension(stage_one: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return ``(kind, prompt)`` for every extension anchor (all ``sensitive``), in file order."""
    return [("sensitive", prompt) for _, prompt in build_extension_by_category(stage_one)]


def build() -> list[tuple[str, str]]:
    """Return ``(kind, prompt)`` for every anchor, in the order written to the file: stage one, then the
    extension."""
    stage_one = build_stage_one()
    return stage_one + build_extension(stage_one)


def render(anchors: list[tuple[str, str]]) -> str:
    """The text of ``anchors.txt``: one prompt per line, in order, ending with a newline."""
    return "\n".join(prompt for _, prompt in anchors) + "\n"


def render_kinds(anchors: list[tuple[str, str]]) -> str:
    """The text of ``anchor_kinds.txt``: the kind of each anchor, line for line with ``render``."""
    unknown = sorted({kind for kind, _ in anchors} - set(KINDS))
    if unknown:
        raise ValueError(f"unknown anchor kind(s) {unknown}; the kinds are {KINDS}")
    return "\n".join(kind for kind, _ in anchors) + "\n"


def _counts(labels: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for label in labels:
        out[label] = out.get(label, 0) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Regenerate (or check) the embedded benign anchor prompts and their kinds."
    )
    parser.add_argument(
        "--check", action="store_true", help="only compare with the files; exit 1 if either differs"
    )
    parser.add_argument(
        "--output", type=Path, default=OUTPUT, help="the anchors file to write or check (%(default)s)"
    )
    parser.add_argument(
        "--kinds-output",
        type=Path,
        default=None,
        help="the kinds file to write or check (default: anchor_kinds.txt beside --output)",
    )
    args = parser.parse_args(argv)
    kinds_output = args.kinds_output or args.output.with_name(KINDS_OUTPUT.name)
    stage_one = build_stage_one()
    extension = build_extension_by_category(stage_one)
    anchors = stage_one + [("sensitive", prompt) for _, prompt in extension]
    files = {
        args.output: render(anchors).encode("utf-8"),
        kinds_output: render_kinds(anchors).encode("utf-8"),
    }
    if args.check:
        status = 0
        for path, data in files.items():
            same = path.is_file() and path.read_bytes() == data
            print(f"{path}: {'byte-identical to' if same else 'DIFFERS from'} the generator output")
            status = status if same else 1
        return status
    for path, data in files.items():
        path.write_bytes(data)
    hand = len(CAPTIONS) + len(T2I_PROMPTS) + len(SENSITIVE)
    hand_more = sum(len(prompts) for prompts in MORE_HAND_WRITTEN.values())
    print(
        f"wrote {len(anchors)} anchors to {args.output} and their kinds to {kinds_output}\n"
        f"  stage one: {len(stage_one)} ({hand} hand-written); by kind: {_counts([k for k, _ in stage_one])}\n"
        f"  extension: {len(extension)} sensitive ({hand_more} hand-written); "
        f"by category: {_counts([c for c, _ in extension])}\n"
        f"  all: by kind: {_counts([k for k, _ in anchors])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
