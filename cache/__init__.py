"""The cache between the stages: its schema (v1), an atomic writer and a lazy reader; and the one
way the project writes a file whole (``write_atomically``)."""
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
from .errors import T3alError
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
    "write_atomically",
    "write_problem",
]
