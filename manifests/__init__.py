"""Dataset manifests: one JSON file with videos, ground truth, class vocabulary and zero-shot splits.

Public API::

    Manifest.load(path) / .save(path) / .validate() / .split_classes(setting, i) / .evaluation_set(setting, i)
    from_thumos14_official(folder), from_t3al_json(path), from_thumos14_json(path), from_activitynet_json(path, ...)
    add_video_info(manifest, info), read_split_lists(root, dataset_folder, classes), read_class_list(path)
    class_name_problem(name)   # why a string cannot name a class (a control character, nothing visible)
    read_text(path, error)   # the one reader of the user's text files (UTF-8, with or without BOM)
    dataset_rules(dataset) -> DatasetRules(name, tious, preset)   # the one place per dataset family
    TIOU_SETS, tiou_set_name(tious)   # named tIoU sets (thumos14, activitynet, activitynet-public)

The format is documented in manifests/manifest.py and manifests/README.md.
"""
from .builders import (
    add_video_info,
    from_activitynet_json,
    from_t3al_json,
    from_thumos14_json,
    from_thumos14_official,
    read_class_list,
    read_split_lists,
)
from .datasets import DATASETS, TIOU_SETS, DatasetRules, dataset_rules, tiou_set_name
from .manifest import (
    FORMAT,
    SETTINGS,
    VERSION,
    EvaluationSet,
    Manifest,
    ManifestError,
    class_name_problem,
    setting_name,
)
from .textfile import read_text

__all__ = [
    "DATASETS",
    "TIOU_SETS",
    "tiou_set_name",
    "DatasetRules",
    "dataset_rules",
    "FORMAT",
    "SETTINGS",
    "VERSION",
    "EvaluationSet",
    "Manifest",
    "ManifestError",
    "class_name_problem",
    "add_video_info",
    "from_activitynet_json",
    "from_t3al_json",
    "from_thumos14_json",
    "from_thumos14_official",
    "read_class_list",
    "read_split_lists",
    "read_text",
    "setting_name",
]
