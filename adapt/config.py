"""Stage-two configuration: one validated dataclass, presets shipped as TOML, one factory."""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

PARAMETERS = ("visual", "text", "scale")
ORACLES = ("class", "count", "selection")
METHODS = ("t3al", "naive", "t3al0", "freezad", "adazad")
UNPUBLISHED = {"adazad": "AdaZAD's optimiser settings and step count are unpublished; these results use "
                         "T3AL's preset values."}  # printed, and kept in results.json, with these methods' results
CHOICES = {
    "method": METHODS,
    "protocol": ("reset", "stream"),
    "implementation": ("fast", "direct"),
    "separation": ("byol", "bce", "none"),
    "representation": ("text", "pairwise", "none"),
    "label_rule": ("pseudo", "argmax"),
    "scoring": ("region", "logoic"),
    "positives": ("pool", "peak"),
    "restore": ("before_last", "none"),
    "adapt": PARAMETERS,
    "oracle": ORACLES,
}


class ConfigError(ValueError):
    """An invalid stage-two configuration value, named with its field."""


@dataclass(frozen=True)
class AdaptConfig:
    """Every knob of METHOD.md; the defaults are the public code's THUMOS14 preset."""

    method: str = "t3al"  # a named method (preset of the settings below), or "naive" (per-frame VLM baseline)
    protocol: str = "reset"  # "reset": every video starts from the model; "stream": public code
    implementation: str = "fast"  # "fast" (re-associated products) or "direct" (full V @ Pv every step)
    steps: int = 60
    k: int = 4
    pool: int = 100  # candidates per side = pool * k
    radius: int = 10  # index perturbation in [-radius, radius - 1]; 0 = none
    remove_background: bool = True
    window: int = 20  # moving average in adaptation and proposals; <= 1 = none
    normalize: bool = True  # min-max normalise the proposal curve
    threshold: float | None = None  # None: keep frames above the curve's mean
    stride: int = 20
    suppression: bool = True
    beta: float = 0.75
    lr: float = 1e-5
    visual_lr_scale: float = 1e-3
    weight_decay: float = 1e-4
    smoothing: float = 0.2  # label smoothing of the byol targets
    separation: str = "byol"
    representation: str = "text"
    adapt: tuple[str, ...] = PARAMETERS
    patience: int = 0  # early stopping after this many steps without a lower loss; 0 = fixed steps
    label_rule: str = "pseudo"  # "pseudo": label = y*, score = q[y*]; "argmax": label = argmax q
    naive_threshold: float = 0.8
    oracle: tuple[str, ...] = ()
    scoring: str = "region"  # "region": q[y*] of the region mean (T3AL); "logoic": LogOIC x actionness (FreeZAD)
    positives: str = "pool"  # "pool": spread over the top pool * K frames (T3AL); "peak": around the argmax (AdaZAD)
    peak_window: int = 15  # positives come from frames argmax - this ... argmax + this
    restore: str = "before_last"  # stream: parameters back to before the last step (T3AL), or "none" (AdaZAD)
    project_visual: bool = True  # False: raw pre-projection features everywhere, no Pv (public Table 6 row)

    def __post_init__(self) -> None:
        object.__setattr__(self, "adapt", tuple(self.adapt))
        object.__setattr__(self, "oracle", tuple(self.oracle))
        for name in ("method", "protocol", "implementation", "separation", "representation", "label_rule",
                     "scoring", "positives", "restore"):
            _choice(name, getattr(self, name), CHOICES[name])
        for name in ("adapt", "oracle"):
            _subset(name, getattr(self, name), CHOICES[name])
        _at_least("steps", self.steps, 0)
        _at_least("k", self.k, 2)
        _at_least("pool", self.pool, 1)
        _at_least("radius", self.radius, 0)
        _at_least("window", self.window, 0)
        _at_least("stride", self.stride, 0)
        _at_least("patience", self.patience, 0)
        _at_least("peak_window", self.peak_window, 0)
        for name in ("lr", "visual_lr_scale", "weight_decay"):
            _at_least(name, getattr(self, name), 0.0)
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if not -1.0 <= self.beta <= 1.0:
            raise ConfigError(f"beta is a cosine threshold in [-1, 1], got {self.beta}")
        if self.separation == "none" and self.representation == "none" and self.steps > 0:
            raise ConfigError("separation and representation are both 'none': nothing to adapt with")
        if not self.adapt and self.steps > 0:
            raise ConfigError("adapt names no parameter: use steps = 0 for the unadapted model")
        if not self.project_visual and self.adapt == ("visual",) and self.steps > 0:
            raise ConfigError("project_visual = false leaves no Pv to adapt: add text or scale to adapt")

    def replace(self, **changes: Any) -> "AdaptConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _subset(name: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ConfigError(f"{name} takes values among {', '.join(allowed)}; got {', '.join(unknown)}")


def _at_least(name: str, value: float, low: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise ConfigError(f"{name} must be a number >= {low}, got {value!r}")


def preset_names() -> list[str]:
    """Names of the shipped presets (TOML files in t3al.adapt.configs)."""
    folder = resources.files("t3al.adapt.configs")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML ({err})") from err


def _check_keys(values: dict[str, Any], source: str) -> dict[str, Any]:
    known = {f.name for f in fields(AdaptConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    return values


def preset_values(name: str) -> dict[str, Any]:
    """The settings of one shipped preset."""
    if name not in preset_names():
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(preset_names())}")
    text = resources.files("t3al.adapt.configs").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return _check_keys(_read_toml(text, f"preset {name}"), f"preset {name}")


def file_values(path: str | Path) -> dict[str, Any]:
    """The settings of a user's TOML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    return _check_keys(_read_toml(path.read_text(encoding="utf-8"), str(path)), str(path))


def dataset_preset(dataset: str) -> str:
    """The shipped preset of a manifest's dataset: activitynet for ActivityNet, else thumos14."""
    return "activitynet" if dataset.lower().startswith("activitynet") else "thumos14"


def method_values(method: str, dataset: str) -> dict[str, Any]:
    """The settings a named method sets on a dataset (``t3al`` and ``naive`` set only their name).

    Each named method is a TOML file in t3al.adapt.methods with one table per dataset preset.
    """
    source = resources.files("t3al.adapt.methods").joinpath(f"{method}.toml")
    if not source.is_file():
        return {"method": method}
    tables = _read_toml(source.read_text(encoding="utf-8"), f"method {method}")
    return _check_keys({**tables.get(dataset_preset(dataset), {}), "method": method}, f"method {method}")


def make_config(preset: str = "thumos14", file: str | Path | None = None, dataset: str | None = None,
                **overrides: Any) -> AdaptConfig:
    """The one factory: a preset, the named method's settings for ``dataset`` (default: the
    preset's), then a config file, then explicit overrides (None = unset)."""
    values: dict[str, Any] = dict(preset_values(preset))
    given = file_values(file) if file is not None else {}
    given.update({k: v for k, v in _check_keys(overrides, "overrides").items() if v is not None})
    method = given.get("method", values.get("method", "t3al"))
    _choice("method", method, METHODS)
    values.update(method_values(method, dataset or preset))
    values.update(given)
    try:
        return AdaptConfig(**values)
    except TypeError as err:
        raise ConfigError(str(err)) from err
