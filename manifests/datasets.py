"""What the protocol knows of each dataset family, in one place: its tIoU thresholds and its preset.

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
