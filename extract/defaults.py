"""The model stage one loads when none is named (kept apart so the CLI's --help imports no torch)."""

DEFAULT_MODEL = "coca_ViT-L-14"
DEFAULT_PRETRAINED = "mscoco_finetuned_laion2b_s13b_b90k"
