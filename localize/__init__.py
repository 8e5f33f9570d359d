"""The practitioner's front door: ``localize(videos_or_cache, actions)`` and ``t3al-localize``.

Stage one where needed (``t3al.extract.extract_folder`` into a cache), the action names as
prompts, stage two on every cached video with that vocabulary (``t3al.adapt.engine.vocabulary``, no
ground truth), detections in the ActivityNet results format and a viewer page. It lives outside
``adapt/`` because it runs stage one, and ``adapt/`` never imports open_clip.
"""
from .localization import Detection, Localization, LocalizeError, LocalizeUsageError, StageError, localize

__all__ = ["Detection", "Localization", "LocalizeError", "LocalizeUsageError", "StageError", "localize"]
