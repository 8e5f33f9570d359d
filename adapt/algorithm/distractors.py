"""The open set's distractor vocabulary and t3al-localize's presence threshold (docs/presence.md):
plain data, importable without torch, so that the command line answers --help at once."""
from __future__ import annotations

DEFAULT_THRESHOLD = 0.5  # t3al-localize's: the action beats the best distractor (docs/presence.md, figures)
# Everyday and sports actions: texts of things that happen in videos, none of them the user's action.
DISTRACTORS = (
    "walking", "running", "jumping", "dancing", "swimming", "cooking", "talking", "eating", "drinking", "reading",
    "writing", "typing", "sleeping", "sitting down", "standing up", "clapping", "waving", "cycling", "driving a car",
    "climbing", "throwing", "catching", "kicking", "hitting", "pushing", "pulling", "lifting", "carrying a box",
    "opening a door", "washing dishes", "brushing teeth", "playing guitar", "singing", "laughing", "hugging",
    "shaking hands", "painting", "cutting", "folding clothes", "sweeping the floor", "skiing", "surfing", "skating",
    "rowing", "fishing", "gardening", "playing football", "playing tennis", "boxing", "stretching",
)


def distractors_for(names: list[str] | tuple[str, ...]) -> list[str]:
    """The distractor vocabulary without the named actions (compared case-insensitively)."""
    named = {name.casefold() for name in names}
    return [d for d in DISTRACTORS if d.casefold() not in named]
