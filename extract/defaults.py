"""Stage one's defaults and choices the CLI needs to build its options (kept apart so --help imports no torch)."""

DEFAULT_MODEL = "coca_ViT-L-14"
DEFAULT_PRETRAINED = "mscoco_finetuned_laion2b_s13b_b90k"
DECODE_ERROR_POLICIES = ("fail", "keep")  # a video with decoder errors or missing frames: refuse it, or cache it with warnings
CAPTION_TEXTS = ("full", "public")  # published captions: the whole text, or what the public code reads of it
CAPTION_DECODINGS = ("beam", "greedy")  # the command line's choices: open_clip's beam search defaults, or its top_k=1 path
PROMPT_TEMPLATE = "a video of action {}"  # a class name becomes a prompt this way (recorded in cache.json)
