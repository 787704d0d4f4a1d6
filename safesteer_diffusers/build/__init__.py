"""Making packs: source features, directions, alignment maps, calibration and gates, target statistics, the
build driver, recipes, the feature cache, model loading and the prompt sets.

Not imported by ``import safesteer_diffusers``; the public entry points are ``safesteer build`` and
:func:`safesteer_diffusers.build.driver.build_pack`.
"""
