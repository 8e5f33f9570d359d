"""Stage-two configuration: one validated dataclass, presets shipped as TOML, one factory."""
from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from t3al.manifests import read_text

PARAMETERS = ("visual", "text", "scale")
ORACLES = ("class", "count", "selection")


def _toml_names(package: str) -> list[str]:
    """Names of the TOML files shipped in ``package`` (presets, named methods)."""
    return sorted(p.name[: -len(".toml")] for p in resources.files(package).iterdir() if p.name.endswith(".toml"))


NAMED_METHODS = tuple(_toml_names("t3al.adapt.methods"))  # settings over a preset, one table per preset
METHODS = ("t3al", "naive", *NAMED_METHODS)
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
    """An invalid stage-two setting: the message names the setting (``setting``) and its value."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


DEFAULT_PRESET = "thumos14"


def _read_preset(name: str) -> dict[str, Any]:
    text = resources.files("t3al.adapt.configs").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return _read_toml(text, f"preset {name}")


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML ({err})") from err


# The per-dataset values are stated once, in the preset files; the dataclass takes the default
# preset's as its defaults, so AdaptConfig() is the thumos14 preset.
_DEFAULTS = _read_preset(DEFAULT_PRESET)


@dataclass(frozen=True)
class AdaptConfig:
    """Every setting of stage two, validated; the defaults are the thumos14 preset (docs/method.md)."""

    method: str = "t3al"  # "t3al", "naive" (per-frame VLM baseline) or a named method (its settings over the preset)
    protocol: str = "reset"  # "reset": every video starts from the model; "stream": public code
    implementation: str = "fast"  # "fast" (re-associated products) or "direct" (full V @ Pv every step)
    steps: int = _DEFAULTS["steps"]
    k: int = _DEFAULTS["k"]
    pool: int = _DEFAULTS["pool"]  # candidates per side = pool * k
    radius: int = _DEFAULTS["radius"]  # index perturbation in [-radius, radius - 1]; 0 = none
    remove_background: bool = _DEFAULTS["remove_background"]
    window: int = _DEFAULTS["window"]  # moving average in adaptation and proposals; <= 1 = none
    normalize: bool = _DEFAULTS["normalize"]  # min-max normalise the proposal curve
    threshold: float | None = _DEFAULTS["threshold"]  # "mean" (stored as None): keep frames above the curve's mean
    stride: int = _DEFAULTS["stride"]
    suppression: bool = True
    beta: float = _DEFAULTS["beta"]
    lr: float = _DEFAULTS["lr"]
    visual_lr_scale: float = _DEFAULTS["visual_lr_scale"]
    weight_decay: float = _DEFAULTS["weight_decay"]
    smoothing: float = _DEFAULTS["smoothing"]  # label smoothing of the byol targets
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
        if self.threshold == "mean":
            object.__setattr__(self, "threshold", None)
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), _HINTS[f.name])
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
        _within("smoothing", self.smoothing, 0.0, 1.0, "[0, 1)", upper_open=True)
        _within("beta", self.beta, -1.0, 1.0, "[-1, 1] (a cosine threshold)")
        _within("naive_threshold", self.naive_threshold, 0.0, 1.0, "[0, 1] (a probability)")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ConfigError(f"threshold must be a finite number or 'mean', got {self.threshold!r}", "threshold")
        if self.separation == "none" and self.representation == "none" and self.steps > 0:
            raise ConfigError("separation and representation are both 'none': nothing to adapt with", "separation")
        if not self.adapt and self.steps > 0:
            raise ConfigError("adapt names no parameter: use steps = 0 for the unadapted model", "adapt")
        if not self.project_visual and self.adapt == ("visual",) and self.steps > 0:
            raise ConfigError("project_visual = false leaves no Pv to adapt: add text or scale to adapt",
                              "project_visual")

    def replace(self, **changes: Any) -> "AdaptConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


_HINTS = typing.get_type_hints(AdaptConfig)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return "a list of names"
    if kind == (float | None):
        return "a number or 'mean'"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a name"}[kind]


def _check_type(name: str, value: Any, kind: Any) -> None:
    """The value's type against the field's (an integer is a number; a list of names a tuple field)."""
    if typing.get_origin(kind) is tuple:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    elif kind == (float | None):
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ConfigError(f"{name} must be {_type_name(kind)}, got {value!r}", name)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}", name)


def _subset(name: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ConfigError(f"{name} takes values among {', '.join(allowed)}; got {', '.join(unknown)}", name)


def _at_least(name: str, value: float, low: float) -> None:
    if not (value >= low and math.isfinite(value)):
        raise ConfigError(f"{name} must be a number >= {low}, got {value!r}", name)


def _within(name: str, value: float, low: float, high: float, text: str, upper_open: bool = False) -> None:
    if not (low <= value < high if upper_open else low <= value <= high):
        raise ConfigError(f"{name} must be in {text}, got {value!r}", name)


def preset_names() -> list[str]:
    """Names of the shipped presets (TOML files in t3al.adapt.configs)."""
    return _toml_names("t3al.adapt.configs")


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
    return _check_keys(_read_preset(name), f"preset {name}")


def file_values(path: str | Path) -> dict[str, Any]:
    """The settings of a user's TOML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    return _check_keys(_read_toml(read_text(path, ConfigError), str(path)), str(path))


def method_values(method: str, preset: str) -> dict[str, Any]:
    """The settings a named method sets over ``preset`` (``t3al`` and ``naive`` set only their name).

    Each named method is a TOML file in t3al.adapt.methods with one table per dataset preset.
    """
    if method not in NAMED_METHODS:
        return {"method": method}
    text = resources.files("t3al.adapt.methods").joinpath(f"{method}.toml").read_text(encoding="utf-8")
    tables = _read_toml(text, f"method {method}")
    if preset not in tables:
        raise ConfigError(f"method {method} has no settings for preset {preset} "
                          f"(has: {', '.join(tables)})", "method")
    return _check_keys({**tables[preset], "method": method}, f"method {method}")


Layer = tuple[str, Mapping[str, Any]]  # (where the settings come from, settings; None = unset)


def make_config(preset: str = DEFAULT_PRESET, file: str | Path | None = None, layers: Sequence[Layer] = (),
                **overrides: Any) -> AdaptConfig:
    """The one factory: a preset, the named method's settings for that preset, then a config file,
    then each layer (e.g. the command line, a sweep row), then ``overrides``. The method is the last
    one any of them names. A bad value is one line naming the setting and where it came from."""
    given = [(f"preset {preset}", preset_values(preset))]
    if file is not None:
        given.append((str(file), file_values(file)))
    given += [*layers, ("overrides", overrides)]
    given = [(source, _check_keys({k: v for k, v in settings.items() if v is not None}, source))
             for source, settings in given]
    source, method = next(((s, v["method"]) for s, v in reversed(given) if "method" in v),
                          ("default", AdaptConfig.method))
    try:
        _choice("method", method, METHODS)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}", "method") from None
    given.insert(1, (f"method {method}", method_values(method, preset)))
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, chosen in given:
        values.update(chosen)
        origin.update(dict.fromkeys(chosen, source))
    try:
        return AdaptConfig(**values)
    except ConfigError as err:
        raise ConfigError(f"{origin.get(err.setting, 'default')}: {err}", err.setting) from None
