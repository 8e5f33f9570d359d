"""Where the bundled tiny CoCa lives and its open_clip name (no torch import, for fast --help)."""
from pathlib import Path

MODEL_NAME = "t3al-demo-coca"
DEMO_DIR = Path(__file__).resolve().parent
CHECKPOINT = DEMO_DIR / "t3al-demo-coca.pt"
