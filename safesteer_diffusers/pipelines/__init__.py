"""diffusers integration: the family registry, ``SafeSteer.wrap`` / ``unwrap`` and the mixin, the installation
on a pipeline (``encode_prompt`` interception, attention processors), and how each pipeline encodes prompts
for its denoiser.
"""
