"""Fitted decisions: is the question answered, does a case belong in a list, is the premise wrong,
and which sentences of a case answer it.

Each is a logistic model over measured evidence (rag.answer.Answerer.features), fitted by
`python -m eval.fit` on the gold set's train split, its threshold chosen on dev, and stored as
plain JSON (rag/fitted.json) with its provenance: never pickled, readable in a diff.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

FITTED = Path(__file__).resolve().parent / "fitted.json"


@dataclass(frozen=True)
class Logistic:
    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]  # standardisation learnt with the fit
    scale: tuple[float, ...]
    threshold: float

    def __call__(self, x: dict[str, float]) -> float:
        z = self.intercept + sum(c * (x[f] - m) / s for f, c, m, s in zip(self.features, self.coef, self.mean, self.scale))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def to_dict(self) -> dict:
        return {"features": list(self.features), "coef": list(self.coef), "intercept": self.intercept,
                "mean": list(self.mean), "scale": list(self.scale), "threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: dict) -> "Logistic":
        return cls(tuple(d["features"]), tuple(map(float, d["coef"])), float(d["intercept"]),
                   tuple(map(float, d["mean"])), tuple(map(float, d["scale"])), float(d["threshold"]))

    @classmethod
    def constant(cls, p: float, threshold: float) -> "Logistic":
        """Says p to everything: what the fit starts from, before any model exists."""
        return cls((), (), math.log(p / (1 - p)), (), (), threshold)


@dataclass(frozen=True)
class Decisions:
    answer_model: Logistic
    member_model: Logistic
    premise_model: Logistic
    sentence_model: Logistic
    provenance: dict

    @property
    def answer_threshold(self) -> float:
        return self.answer_model.threshold

    @property
    def member_threshold(self) -> float:
        return self.member_model.threshold

    @property
    def premise_threshold(self) -> float:
        return self.premise_model.threshold

    def answerable(self, x: dict[str, float]) -> float:
        return self.answer_model(x)

    def member(self, x: dict[str, float]) -> float:
        return self.member_model(x)

    def premise(self, x: dict[str, float]) -> float:
        return self.premise_model(x)

    def sentence(self, x: dict[str, float]) -> float:
        return self.sentence_model(x)

    @classmethod
    def load(cls, path: Path = FITTED) -> "Decisions":
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(Logistic.from_dict(d["answerable"]), Logistic.from_dict(d["member"]),
                   Logistic.from_dict(d["premise"]), Logistic.from_dict(d["sentence"]), d.get("provenance", {}))

    @classmethod
    def unfitted(cls) -> "Decisions":
        """Answers everything, keeps only the best case in a list, corrects nothing: the
        behaviour the features are collected under before the first fit."""
        return cls(Logistic.constant(0.9, 0.5), Logistic.constant(0.1, 0.5), Logistic.constant(0.1, 0.5),
                   Logistic(("fused",), (1.0,), 0.0, (0.0,), (1.0,), 0.5), {"fitted": False})

    def save(self, path: Path = FITTED) -> None:
        d = {"provenance": self.provenance, "answerable": self.answer_model.to_dict(),
             "member": self.member_model.to_dict(), "premise": self.premise_model.to_dict(),
             "sentence": self.sentence_model.to_dict()}
        Path(path).write_text(json.dumps(d, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
