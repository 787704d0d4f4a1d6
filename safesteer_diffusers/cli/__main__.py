"""``python -m safesteer_diffusers.cli ...`` = ``safesteer ...`` (what ``torchrun`` / ``accelerate launch -m`` need)."""

import sys

from .main import main

sys.exit(main())
