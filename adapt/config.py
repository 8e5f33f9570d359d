"""Stage-two configuration: one validated dataclass, presets shipped as TOML, one factory."""
from __future__ import annotations

import abc
import dataclasses
import math
import sys
import typing
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib

from t3al.cache import T3alError
from t3al.manifests import read_text

PARAMETERS = ("visual", "text", "scale")
ORACLES = ("class", "count", "selection")


def _toml_names(package: str) -> list[str]:
    """Names of the TOML files shipped in ``package`` (presets, named methods)."""
    return sorted(p.name[: -len(".toml")] for p in resources.files(package).iterdir() if p.name.endswith(".toml"))


NAMED_METHODS = tuple(_toml_names("t3al.adapt.methods"))  # settings over a preset, one table per preset
METHODS = ("t3al", "naive", *NAMED_METHODS)
METHOD_NOTES = ("unpublished",)  # what a method's TOML may say about the method, above its preset tables


class ConfigError(T3alError, ValueError):
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


GROUPS = ("method", "adaptation", "proposals", "scoring", "stream", "online")


class Constraint(abc.ABC):
    """One rule a setting's value must follow, which writes its own message when the value breaks it
    (as scikit-learn's parameter constraints do). A setting's value is checked against its type
    first; a value of the right type must satisfy one of the setting's constraints."""

    @abc.abstractmethod
    def satisfied_by(self, value: Any) -> bool:
        """Whether ``value`` follows the rule."""

    @abc.abstractmethod
    def describe(self) -> str:
        """What the rule asks for, to follow "must be" ("a number >= 0")."""

    def message(self, name: str, value: Any) -> str:
        return f"{name} must be {self.describe()}, got {value!r}"


@dataclass(frozen=True)
class OneOf(Constraint):
    """One of a few names."""

    names: tuple[str, ...]

    def satisfied_by(self, value: Any) -> bool:
        return value in self.names

    def describe(self) -> str:
        return f"one of {', '.join(self.names)}"

    def message(self, name: str, value: Any) -> str:
        return f"{name} must be {self.describe()}; got {value!r}"


@dataclass(frozen=True)
class SomeOf(Constraint):
    """A list of names, each one of a few (a setting given by a repeated option)."""

    names: tuple[str, ...]

    def satisfied_by(self, value: Any) -> bool:
        return all(v in self.names for v in value)

    def describe(self) -> str:
        return f"values among {', '.join(self.names)}"

    def message(self, name: str, value: Any) -> str:
        unknown = [v for v in value if v not in self.names]
        return f"{name} takes values among {', '.join(self.names)}; got {', '.join(unknown)}"


@dataclass(frozen=True)
class AtLeast(Constraint):
    """A finite number no smaller than ``low``."""

    low: float

    def satisfied_by(self, value: Any) -> bool:
        return value >= self.low and math.isfinite(value)

    def describe(self) -> str:
        return f"a number >= {self.low}"


@dataclass(frozen=True)
class Within(Constraint):
    """A number from ``low`` to ``high`` (``high`` left out with ``upper_open``); ``text`` is how the
    range reads in a message ("[0, 1] (a probability)")."""

    low: float
    high: float
    text: str
    upper_open: bool = False

    def satisfied_by(self, value: Any) -> bool:
        return self.low <= value < self.high if self.upper_open else self.low <= value <= self.high

    def describe(self) -> str:
        return f"in {self.text}"


@dataclass(frozen=True)
class Finite(Constraint):
    """Any finite number."""

    def satisfied_by(self, value: Any) -> bool:
        return math.isfinite(value)

    def describe(self) -> str:
        return "a finite number"


@dataclass(frozen=True)
class Option(Constraint):
    """A word the setting takes besides a value of its type, and the value it stands for (the
    threshold's 'mean' stands for None: the curve's mean, computed per video)."""

    word: str
    stands_for: Any

    def satisfied_by(self, value: Any) -> bool:
        return value == self.word

    def describe(self) -> str:
        return repr(self.word)


@dataclass(frozen=True)
class Setting:
    """What one setting declares besides its name, type and default: its group, the help the
    command line shows, the constraints its value follows, and whether it changes the adaptation
    (configs differing only in settings that do not share it)."""

    group: str
    help: str
    constraints: tuple[Constraint, ...] = ()
    adapts: bool = True

    @property
    def options(self) -> dict[str, Any]:
        """The words the setting takes besides its type, and the value each stands for."""
        return {c.word: c.stands_for for c in self.constraints if isinstance(c, Option)}

    @property
    def choices(self) -> tuple[str, ...]:
        """The names the setting takes, when it takes names."""
        return next((c.names for c in self.constraints if isinstance(c, (OneOf, SomeOf))), ())

    @property
    def high(self) -> float | None:
        """The top of the setting's range, when it has one."""
        return next((c.high for c in self.constraints if isinstance(c, Within)), None)

    def resolve(self, value: Any) -> Any:
        """The value an option word stands for; any other value as it is."""
        return self.options.get(value, value) if isinstance(value, str) else value

    def check(self, name: str, value: Any) -> None:
        """The value (of the right type; None: unset or an option's) against the constraints: one
        constraint writes its own message, several say together what they ask for."""
        if value is None or not self.constraints or any(c.satisfied_by(value) for c in self.constraints):
            return
        if len(self.constraints) == 1:
            raise ConfigError(self.constraints[0].message(name, value), name)
        raise ConfigError(f"{name} must be {' or '.join(c.describe() for c in self.constraints)}, got {value!r}",
                          name)


def setting(default: Any, group: str, help: str, *constraints: Constraint, adapts: bool = True) -> Any:
    """A field of AdaptConfig with its declaration (``Setting``) as metadata."""
    return dataclasses.field(default=default, metadata={"setting": Setting(group, help, constraints, adapts)})


def _proposal(default: Any, help: str, *constraints: Constraint) -> Any:
    return setting(default, "proposals", help, *constraints, adapts=False)


@dataclass(frozen=True)
class AdaptConfig:
    """Every setting of stage two, each declared once (type, default, group, range or choices,
    help), validated; the defaults are the thumos14 preset (docs/method.md)."""

    method: str = setting("t3al", "method", "t3al, naive (the paper's per-frame VLM baseline), or a named method: "
                          "t3al0 (T=0, public per-dataset settings), freezad, adazad (docs/freezad.md). A named method "
                          "sets its settings for the preset; --config and the other options apply over them.",
                          OneOf(METHODS))
    protocol: str = setting("reset", "stream", "reset: each video starts from the model (independent, parallel); "
                            "stream: the public code's one optimiser over the videos in order; online: each "
                            "video consumed in chunks, never looking ahead, detections emitted once certain "
                            "(docs/online.md).",
                            OneOf(("reset", "stream", "online")))
    implementation: str = setting("fast", "adaptation", "fast (re-associated products) or direct (full V @ Pv every "
                                  "step, as the public code).", OneOf(("fast", "direct")))
    steps: int = setting(_DEFAULTS["steps"], "adaptation", "Adaptation steps T (0 with --no-suppression gives "
                         "T3AL_0).", AtLeast(0))
    k: int = setting(_DEFAULTS["k"], "adaptation", "Positive and negative samples per step (K).", AtLeast(2))
    pool: int = setting(_DEFAULTS["pool"], "adaptation", "Candidates per side = pool * K.", AtLeast(1))
    radius: int = setting(_DEFAULTS["radius"], "adaptation", "Sample index perturbation radius r, moves in [-r, r - 1]; "
                          "0 = none (exactly reproducible).", AtLeast(0))
    remove_background: bool = setting(_DEFAULTS["remove_background"], "adaptation",
                                      "Subtract the mean frame embedding before scoring frames.")
    window: int = setting(_DEFAULTS["window"], "adaptation", "Moving-average window of the similarity curve, in "
                          "adaptation and proposals; 0 or 1 = none.", AtLeast(0))
    normalize: bool = _proposal(_DEFAULTS["normalize"], "Min-max normalise the proposal curve.")
    threshold: float | None = _proposal(_DEFAULTS["threshold"], "Proposal threshold on the curve; 'mean' keeps frames "
                                        "above its mean.", Finite(), Option("mean", None))
    stride: int = _proposal(_DEFAULTS["stride"], "Largest gap (frames) inside one proposal.", AtLeast(0))
    suppression: bool = _proposal(True, "Caption-guided suppression of proposals.")
    beta: float = _proposal(_DEFAULTS["beta"], "Caption cosine threshold of the suppression.",
                            Within(-1.0, 1.0, "[-1, 1] (a cosine threshold)"))
    lr: float = setting(_DEFAULTS["lr"], "adaptation", "Learning rate of Pt and s.", AtLeast(0.0))
    visual_lr_scale: float = setting(_DEFAULTS["visual_lr_scale"], "adaptation", "Pv learning rate = lr * this.",
                                     AtLeast(0.0))
    weight_decay: float = setting(_DEFAULTS["weight_decay"], "adaptation", "Adam's L2 weight decay.", AtLeast(0.0))
    smoothing: float = setting(_DEFAULTS["smoothing"], "adaptation", "Label smoothing of the byol targets.",
                               Within(0.0, 1.0, "[0, 1)", upper_open=True))
    separation: str = setting("byol", "adaptation", "Separation loss on the scores: byol, bce or none.",
                              OneOf(("byol", "bce", "none")))
    representation: str = setting("text", "adaptation", "Representation loss: text (public code), pairwise (paper "
                                  "Eq. 7) or none.", OneOf(("text", "pairwise", "none")))
    adapt: tuple[str, ...] = setting(PARAMETERS, "adaptation", "Parameter to adapt (repeat): visual, text, scale.",
                                     SomeOf(PARAMETERS))
    patience: int = setting(0, "adaptation", "Early stopping after this many steps without a lower loss (paper: 5); "
                            "0 = fixed steps.", AtLeast(0))
    label_rule: str = setting("pseudo", "scoring", "pseudo: label = video pseudo-label (public code); argmax: "
                              "per-region argmax (paper).", OneOf(("pseudo", "argmax")), adapts=False)
    labels_per_video: int = setting(1, "adaptation", "Video-level labels localized per video, each with its own "
                                    "adaptation, detections merged: the pseudo-label, then the next most probable "
                                    "classes (1: T3AL's rule).", AtLeast(1))
    label_threshold: float = setting(0.0, "adaptation", "With --labels-per-video above 1, only the further labels "
                                     "whose video-level probability is at least this (0: all of them).",
                                     Within(0.0, 1.0, "[0, 1] (a probability)"))
    presence_threshold: float | None = setting(None, "scoring", "Open-set rule (docs/presence.md): a video's labels "
                                               "are the actions whose presence reaches this (most present first, up "
                                               "to --labels-per-video), each detection scored presence x segment "
                                               "score; unset: the closed-world rule (every video its pseudo-label).",
                                               Within(0.0, 1.0, "[0, 1] (a presence)"))
    naive_threshold: float = _proposal(0.8, "Frame probability threshold of the naive baseline.",
                                       Within(0.0, 1.0, "[0, 1] (a probability)"))
    oracle: tuple[str, ...] = setting((), "adaptation", "Ground-truth oracle (repeat): class, count, selection (paper "
                                      "Fig. 4); count acts on proposals only.", SomeOf(ORACLES))
    scoring: str = setting("region", "scoring", "Segment score: region (q[y*] of the region mean, T3AL) or logoic "
                           "(LogOIC x actionness, FreeZAD).", OneOf(("region", "logoic")), adapts=False)
    positives: str = setting("pool", "adaptation", "Positive samples: pool (spread over the top pool*K frames, T3AL) "
                             "or peak (around the curve's argmax, AdaZAD; with --radius 0 the K frames nearest it).",
                             OneOf(("pool", "peak")))
    peak_window: int = setting(15, "adaptation", "Peak positives come from frames argmax - this ... argmax + this.",
                               AtLeast(0))
    restore: str = setting("before_last", "stream", "Stream protocol, after each video: before_last (back to before "
                           "the last step, T3AL) or none (every update carries over, AdaZAD).",
                           OneOf(("before_last", "none")))
    chunk: int = setting(30, "online", "Online protocol: frames consumed per chunk (the state is updated once per "
                         "chunk).", AtLeast(1))
    chunk_steps: int = setting(2, "online", "Online protocol: adaptation steps per chunk, carried over from chunk to "
                               "chunk (--steps is the offline protocols' count; 0 = no adaptation).", AtLeast(0))
    online_window: int = setting(900, "online", "Online protocol: the last this many frames give the pseudo-label, the "
                                 "background, the samples and the threshold.", AtLeast(2))
    project_visual: bool = setting(True, "adaptation", "Use the visual projection Pv; --no-project-visual: raw "
                                   "pre-projection features everywhere (the public Table 6 row and the public "
                                   "baseline's from_features path).")

    def __post_init__(self) -> None:
        for name, declared in SETTINGS.items():
            object.__setattr__(self, name, declared.resolve(getattr(self, name)))
            _check_type(name, getattr(self, name), _HINTS[name], declared)
        object.__setattr__(self, "adapt", tuple(self.adapt))
        object.__setattr__(self, "oracle", tuple(self.oracle))
        for name, declared in SETTINGS.items():
            declared.check(name, getattr(self, name))
        if self.separation == "none" and self.representation == "none" and self.steps > 0:
            raise ConfigError("separation and representation are both 'none': nothing to adapt with", "separation")
        if not self.adapt and self.steps > 0:
            raise ConfigError("adapt names no parameter: use steps = 0 for the unadapted model", "adapt")
        if self.protocol == "online":
            self._check_online()
        if self.labels_per_video > 1 and (self.protocol != "reset" or self.oracle or not self.runs_t3al_steps):
            raise ConfigError("labels_per_video above 1 needs the per-video reset protocol, an adapting method and no "
                              "oracle (each label gets its own adaptation of the video)", "labels_per_video")
        if self.presence_threshold is not None and "class" in self.oracle:
            raise ConfigError("presence_threshold chooses a video's labels from the presences and the class oracle "
                              "from the ground truth: use one of them", "presence_threshold")
        if not self.project_visual and self.adapt == ("visual",) and self.steps > 0:
            raise ConfigError("project_visual = false leaves no Pv to adapt: add text or scale to adapt",
                              "project_visual")

    def _check_online(self) -> None:
        """The online protocol runs T3AL's own steps causally (docs/online.md); what it has no causal
        form for is refused."""
        if not self.runs_t3al_steps or self.scoring != "region" or self.positives != "pool" or self.oracle:
            raise ConfigError("protocol online runs T3AL's steps (method t3al or t3al0, region scoring, pool "
                              "positives, no oracle)", "protocol")
        if self.presence_threshold is not None:
            raise ConfigError("protocol online has no open-set rule yet (presences are computed on whole videos): "
                              "leave out presence_threshold", "presence_threshold")
        if self.online_window < self.chunk + self.window:
            raise ConfigError(f"online_window must hold a chunk and a smoothing window (at least "
                              f"{self.chunk + self.window} frames), got {self.online_window}", "online_window")

    @property
    def runs_t3al_steps(self) -> bool:
        """Whether the method localizes with T3AL's steps: every method but the naive per-frame baseline."""
        return self.method != "naive"

    def replace(self, **changes: Any) -> "AdaptConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every setting by name, but those the run does not read, so that runs keep the records, names
        and folders they had before the setting existed: the online protocol's settings under another
        protocol, and the open-set rule when it is off."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)
                if (self.protocol == "online" or SETTINGS[f.name].group != "online")
                and (f.name != "presence_threshold" or self.presence_threshold is not None)}

    def group(self, name: str) -> dict[str, Any]:
        """The settings of one group (``GROUPS``), by name."""
        return {key: getattr(self, key) for key, declared in SETTINGS.items() if declared.group == name}


SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in fields(AdaptConfig)}
PROPOSAL_FIELDS = tuple(name for name, declared in SETTINGS.items() if not declared.adapts)  # read after adaptation
_HINTS = typing.get_type_hints(AdaptConfig)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _type_name(kind: Any, declared: Setting) -> str:
    """The field's type as a message names it, with the setting's option words ("a number or 'mean'")."""
    if typing.get_origin(kind) is tuple:
        base = "a list of names"
    else:
        base = {bool: "true or false", int: "an integer", float: "a number", float | None: "a number",
                str: "a name"}[kind]
    return " or ".join([base, *map(repr, declared.options)])


def _check_type(name: str, value: Any, kind: Any, declared: Setting) -> None:
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
        raise ConfigError(f"{name} must be {_type_name(kind, declared)}, got {value!r}", name)


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


def _read_method(method: str) -> dict[str, Any]:
    """A named method's TOML: its notes (``METHOD_NOTES``) and one table of settings per preset."""
    text = resources.files("t3al.adapt.methods").joinpath(f"{method}.toml").read_text(encoding="utf-8")
    return _read_toml(text, f"method {method}")


def method_values(method: str, preset: str) -> dict[str, Any]:
    """The settings a named method sets over ``preset`` (``t3al`` and ``naive`` set only their name).

    Each named method is a TOML file in t3al.adapt.methods with one table per dataset preset.
    """
    if method not in NAMED_METHODS:
        return {"method": method}
    tables = {key: value for key, value in _read_method(method).items() if key not in METHOD_NOTES}
    if preset not in tables:
        raise ConfigError(f"method {method} has no settings for preset {preset} "
                          f"(has: {', '.join(tables)})", "method")
    return _check_keys({**tables[preset], "method": method}, f"method {method}")


# A method whose settings are not all published: the note is printed, and kept in results.json, with its results.
UNPUBLISHED = {method: note for method in NAMED_METHODS if (note := _read_method(method).get("unpublished"))}


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
        SETTINGS["method"].check("method", method)
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
