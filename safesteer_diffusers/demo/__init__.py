"""`safesteer demo`: the whole method on an embedded default, offline, in about a minute on a CPU.

- :mod:`.run`: the driver (:func:`~safesteer_diffusers.demo.run.run_demo`, :class:`~.run.DemoResult`).
- :mod:`.config`: :class:`~safesteer_diffusers.demo.config.DemoConfig` and the demo's prompts.
- The job's steps: :mod:`.models` (load the source model and the target pipeline), :mod:`.building` (build
  the pack, compare it with the shipped default), :mod:`.inspection` (inspect report, gate rates on held-out
  prompts), :mod:`.generation` (generate per condition, measure the conditioning shift).
- :mod:`.files`: the files written (``demo.json``, ``gates.txt``, ``conditioning_shift.txt``, ``grid.png``,
  ``README.txt``); :mod:`.console`: what is printed.

The tiny pipelines and the tiny source model come from :mod:`safesteer_diffusers.testing`; the subcommand is
:mod:`safesteer_diffusers.cli.demo`. Nothing heavy is imported here.
"""

from safesteer_diffusers.utils.logging import silence_torchvision_notices

# Before the demo's modules import diffusers: transformers' "requires torchvision ... falling back to ...Pil"
# notice is about image processors the demo never uses (only that notice is dropped).
silence_torchvision_notices()
