"""The practitioner's front door: ``t3al-localize VIDEOS_OR_CACHE --actions "a, b"``.

Stage one where needed (``t3al-extract`` into a cache), the action names as prompts, stage two on
every cached video with that vocabulary (``t3al.adapt.vocabulary``, no ground truth), detections in
the ActivityNet results format and a viewer page. It lives outside ``adapt/`` because it runs stage
one, and ``adapt/`` never imports open_clip.
"""
