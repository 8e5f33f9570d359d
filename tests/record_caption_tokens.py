"""Record open_clip's ``CoCa.generate`` tokens for the demo CoCa: the goldens of test_captions.py.

They let the caption tests check token equality where open_clip's ``generate`` cannot run (no
transformers below 4.56 installed). Run from the repository root, where ``generate`` can run:
``python tests/record_caption_tokens.py`` rewrites ``tests/data/caption_tokens.json``.
"""
from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import torch
import transformers

from t3al.extract.captions import CaptionSettings, open_clip_tokens
from test_captions import GOLDEN_CASES, GOLDEN_FILE, demo_model_and_images


def record() -> dict:
    """Tokens of every golden case, with the versions that made them."""
    model, images = demo_model_and_images()
    cases = []
    for options, stride, seed in GOLDEN_CASES:
        torch.manual_seed(seed)
        tokens = open_clip_tokens(model, images[::stride], CaptionSettings(**options))
        cases.append({"settings": options, "image_stride": stride, "seed": seed, "tokens": tokens.tolist()})
    return {"open_clip": version("open_clip_torch"), "torch": torch.__version__, "transformers": transformers.__version__,
            "cases": cases}


if __name__ == "__main__":
    recorded = record()
    cases = ",\n  ".join(json.dumps(case) for case in recorded.pop("cases"))  # one line per case
    Path(GOLDEN_FILE).write_text(json.dumps(recorded)[:-1] + f', "cases": [\n  {cases}\n]}}\n')
    print(f"wrote {GOLDEN_FILE}")
