"""What the protocol knows of each dataset family, in one place: its tIoU thresholds and its preset,
and the named tIoU sets a table may average over instead.

A manifest's free ``dataset`` name selects the family: names starting with ``activitynet`` follow
ActivityNet's rules, every other name THUMOS14's (the protocol's default).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetRules:
    """One dataset family: its name, its evaluation thresholds and its stage-two settings preset."""

    name: str
    tious: tuple[float, ...]
    preset: str


THUMOS14 = DatasetRules("thumos14", (0.3, 0.4, 0.5, 0.6, 0.7), "thumos14")
ACTIVITYNET = DatasetRules("activitynet", (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95), "activitynet")
DATASETS = {rules.name: rules for rules in (THUMOS14, ACTIVITYNET)}


def dataset_rules(dataset: str) -> DatasetRules:
    """The family of a manifest's dataset name (ActivityNet for ``activitynet*``, else THUMOS14)."""
    return ACTIVITYNET if dataset.lower().startswith(ACTIVITYNET.name) else THUMOS14

# Named tIoU sets: each family's protocol thresholds, and the public T3AL script's ActivityNet "Avg",
# which averages over 0.5, 0.75 and 0.95 only.
TIOU_SETS = {**{name: rules.tious for name, rules in DATASETS.items()}, "activitynet-public": (0.5, 0.75, 0.95)}


def tiou_set_name(tious: tuple[float, ...]) -> str:
    """The name of the set ``tious`` form (compared to 4 decimals), else ``custom``."""
    rounded = tuple(round(float(t), 4) for t in tious)
    return next((name for name, values in TIOU_SETS.items() if tuple(round(v, 4) for v in values) == rounded),
                "custom")
