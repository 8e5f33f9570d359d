"""Stage one: videos into a cache of features, captions and class prompts.

``extract_folder(videos, cache, ...)`` and ``add_prompts(cache, names, ...)`` are the Python API;
``t3al-extract`` is a thin command line over them.
"""
from .folder import ExtractError, ExtractUsageError, FolderExtraction, add_prompts, extract_folder

__all__ = ["ExtractError", "ExtractUsageError", "FolderExtraction", "add_prompts", "extract_folder"]
