"""SafeSteer nodes for ComfyUI: the same packs and the same maths as the diffusers integration.

Nodes (category ``safesteer``): Load SafeSteer Pack, SafeSteer Model, SafeSteer Conditioning, SafeSteer
Report, and Load SafeSteer Gate Model (the source model of a pack's source-model gate). The logic lives in :mod:`safesteer_diffusers.steering.conditioning`; these classes only adapt ComfyUI's
types. Nothing here imports ``comfy`` at import time (only when a node runs), nor diffusers.
"""

from .conditioning_nodes import SafeSteerConditioning, SafeSteerReport
from .gate_model_nodes import LoadSafeSteerGateModel
from .model_nodes import SafeSteerModel
from .pack_nodes import LoadSafeSteerPack, register_model_folder

register_model_folder()

NODE_CLASS_MAPPINGS = {
    "LoadSafeSteerPack": LoadSafeSteerPack,
    "SafeSteerModel": SafeSteerModel,
    "SafeSteerConditioning": SafeSteerConditioning,
    "SafeSteerReport": SafeSteerReport,
    "LoadSafeSteerGateModel": LoadSafeSteerGateModel,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadSafeSteerPack": "Load SafeSteer Pack",
    "SafeSteerModel": "SafeSteer Model",
    "SafeSteerConditioning": "SafeSteer Conditioning",
    "SafeSteerReport": "SafeSteer Report",
    "LoadSafeSteerGateModel": "Load SafeSteer Gate Model",
}

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
