"""The expression class sets, defined once.

`ckplus7` is the seven CK+ emotions used by the paper's protocol; `ckplus8` adds `neutral`, which a robot
sees most of the time. Models record the set and its names in their manifest.
"""
from __future__ import annotations

CKPLUS7: tuple[str, ...] = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
CKPLUS8: tuple[str, ...] = CKPLUS7 + ("neutral",)

CLASS_SETS: dict[str, tuple[str, ...]] = {"ckplus7": CKPLUS7, "ckplus8": CKPLUS8}

NEUTRAL = "neutral"


def class_names(class_set: str) -> tuple[str, ...]:
    """The ordered class names of a class set; raises ValueError naming the known sets."""
    try:
        return CLASS_SETS[class_set]
    except KeyError:
        raise ValueError(
            f"unknown class set {class_set!r}; known: {', '.join(sorted(CLASS_SETS))}") from None
