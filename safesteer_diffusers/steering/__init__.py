"""Steering maths on plain tensors: add / project / gate, the configuration, the per-call plan and report,
and steering a bare conditioning tensor (what the ComfyUI nodes use).

Knows packs and tensors, never diffusers or ``pipelines/``.
"""
