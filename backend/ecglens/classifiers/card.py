"""Model cards: the JSON beside a model file that says what it expects and what it answers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ecglens.ecg import normalize_lead
from ecglens.errors import ClassifierError

LEAD_RULES = ("fixed", "any")
MODALITIES = ("ecg", "image", "video")
_INPUT_DIMS = {"image": ("C", "H", "W"), "video": ("T", "C", "H", "W")}
_ECG_REQUIRED = {"name", "classes", "sampling_rate", "leads", "window_s"}
_VISION_REQUIRED = {"name", "classes", "input_shape", "output"}
_ECG_ONLY = ("sampling_rate", "leads", "window_s", "input_units", "lead_stand_ins", "lead_rule")


@dataclass
class ModelCard:
    """What a classifier expects and answers; saved as JSON beside the model (same stem, ``.json``).

    ``modality`` is "ecg" (the default), "image" or "video".

    An ECG card requires name, classes, sampling_rate (Hz), leads, window_s (s). An image or video card requires
    name, modality, classes, input_shape (``[C, H, W]`` or ``[T, C, H, W]``: the model takes float32
    ``[n, *input_shape]`` with values in [0, 1], times ``input_scale``) and output; it has no rate, leads or
    window. The rest have defaults:
    input_units "mV", output "probabilities" (or "logits": softmax / sigmoid is applied by the adapter),
    multilabel False, thresholds 0.5 per class, input_scale 1.0 (the model sees ``signal_mV * input_scale``),
    lead_stand_ins {} (leads the model was trained to take in place of a card lead when a record lacks it, in order
    of preference: ``{"V1": ["V2", "V4", "V5"]}`` for a model trained on MIT-BIH's mixed second leads),
    lead_rule "fixed" (the input rows are ``leads``, in that order) or "any" (the model takes the record's own
    leads, however many (at least one), of any names, in the record's order; ``leads`` then names the leads it was
    trained on, and what a caller that does not know the rule may send).
    """

    name: str
    classes: list[str]
    sampling_rate: float = 0.0
    leads: list[str] = field(default_factory=list)
    window_s: float = 0.0
    input_units: str = "mV"
    output: Literal["probabilities", "logits"] = "probabilities"
    multilabel: bool = False
    thresholds: dict[str, float] = field(default_factory=dict)
    input_scale: float = 1.0
    lead_stand_ins: dict[str, list[str]] = field(default_factory=dict)
    lead_rule: Literal["fixed", "any"] = "fixed"
    version: str = "1"
    architecture: str = ""
    description: str = ""
    intended_use: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    modality: Literal["ecg", "image", "video"] = "ecg"
    input_shape: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.classes:
            raise ClassifierError(f"model card {self.name!r}: no classes")
        if self.modality not in MODALITIES:
            raise ClassifierError(
                f"model card {self.name!r}: modality must be one of {', '.join(MODALITIES)}, got {self.modality!r}"
            )
        if self.modality != "ecg":
            self._check_vision()
            return
        if self.sampling_rate <= 0 or self.window_s <= 0:
            raise ClassifierError(f"model card {self.name!r}: sampling_rate and window_s must be positive")
        if self.output not in ("probabilities", "logits"):
            raise ClassifierError(f"model card {self.name!r}: output must be 'probabilities' or 'logits'")
        if self.lead_rule not in LEAD_RULES:
            raise ClassifierError(
                f"model card {self.name!r}: lead_rule must be one of {', '.join(LEAD_RULES)}, got {self.lead_rule!r}"
            )
        if self.input_units != "mV":
            raise ClassifierError(f"model card {self.name!r}: input_units must be 'mV', got {self.input_units!r}")
        self.leads = [normalize_lead(lead) for lead in self.leads]
        self.lead_stand_ins = {
            normalize_lead(k): [normalize_lead(x) for x in v] for k, v in (self.lead_stand_ins or {}).items()
        }
        self.thresholds = {c: float(self.thresholds.get(c, 0.5)) for c in self.classes}

    def _check_vision(self) -> None:
        dims = _INPUT_DIMS[self.modality]
        shape = self.input_shape
        if (
            not isinstance(shape, (list, tuple))
            or len(shape) != len(dims)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
        ):
            raise ClassifierError(
                f"model card {self.name!r}: an {self.modality} card's input_shape must be "
                f"[{', '.join(dims)}] (positive integers), got {shape!r}"
            )
        self.input_shape = [int(s) for s in shape]
        if self.output not in ("probabilities", "logits"):
            raise ClassifierError(f"model card {self.name!r}: output must be 'probabilities' or 'logits'")
        if not (isinstance(self.input_scale, (int, float)) and self.input_scale > 0):
            raise ClassifierError(f"model card {self.name!r}: input_scale must be a positive number")
        self.thresholds = {c: float(self.thresholds.get(c, 0.5)) for c in self.classes}

    @property
    def is_vision(self) -> bool:
        """An image or video card."""
        return self.modality in ("image", "video")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = set(cls.__dataclass_fields__)
        required = _ECG_REQUIRED if data.get("modality", "ecg") == "ecg" else _VISION_REQUIRED
        missing = required - set(data)
        if missing:
            raise ClassifierError(f"model card lacks {', '.join(sorted(missing))}")
        extra = {k: v for k, v in data.items() if k not in known}
        fields = {k: v for k, v in data.items() if k in known}
        fields.setdefault("extra", {}).update(extra)
        return cls(**fields)

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ClassifierError(f"{path}: model card not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ClassifierError(f"{path}: unreadable model card ({exc})") from None
        if not isinstance(data, dict):
            raise ClassifierError(f"{path}: model card must be a JSON object")
        try:
            return cls.from_dict(data)
        except ClassifierError as exc:  # name the file: the same message for a missing field or a bad value
            raise ClassifierError(f"{path}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ClassifierError(f"{path}: invalid model card ({exc})") from None

    def to_dict(self) -> dict[str, Any]:
        """The card's fields; an ECG card leaves out ``modality`` and ``input_shape``, an image or video card the
        ECG fields (rate, leads, window, units, lead rules)."""
        out = asdict(self)
        drop = _ECG_ONLY if self.modality != "ecg" else ("modality", "input_shape")
        return {k: v for k, v in out.items() if k not in drop}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def card_path_for(model_path: str | Path) -> Path:
    """The model card beside a model file: same stem, ``.json``."""
    return Path(model_path).with_suffix(".json")
