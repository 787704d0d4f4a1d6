"""ComfyUI entry point: this repository is a custom-node folder (clone it into ``ComfyUI/custom_nodes/``).

ComfyUI imports this file as a package and reads ``NODE_CLASS_MAPPINGS`` / ``NODE_DISPLAY_NAME_MAPPINGS``
(the nodes live in ``comfy_nodes/``) and ``WEB_DIRECTORY`` (a small script that shows the report text).
Importing the nodes imports neither diffusers nor transformers.
"""

import importlib.util
import os
import sys

if importlib.util.find_spec("safesteer_diffusers") is None:
    # A plain clone into custom_nodes/ is not pip-installed: make the library next to this file importable.
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))

if __package__:  # imported by ComfyUI as the custom-node package
    from .comfy_nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:  # imported as a plain module (e.g. pytest's importlib mode collecting the repository root)
    from comfy_nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./comfy_nodes/web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
