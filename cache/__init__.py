"""The cache between the stages: its schema (v1), an atomic writer and a lazy reader; the one
way the project writes a file whole (``write_atomically``); the project's error base (``T3alError``) and
its end on a signal (``terminated_cleanly``)."""
from .schema import (
    SCHEMA_VERSION,
    CacheError,
    CacheInfo,
    Head,
    ModelIdentity,
    VideoRecord,
    check_video_id,
    check_video_name,
    safe_video_id,
)
from .errors import T3alError, terminated_cleanly
from .files import write_atomically, write_problem
from .store import CacheReader, CacheWriter, DiskFullError, check_writable

__all__ = [
    "SCHEMA_VERSION",
    "T3alError",
    "CacheError",
    "CacheInfo",
    "CacheReader",
    "CacheWriter",
    "Head",
    "ModelIdentity",
    "VideoRecord",
    "DiskFullError",
    "check_video_id",
    "check_video_name",
    "check_writable",
    "safe_video_id",
    "terminated_cleanly",
    "write_atomically",
    "write_problem",
]
