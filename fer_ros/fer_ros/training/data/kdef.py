"""The KDEF layout: photos named <session><sex><id><expression><angle>.jpg, e.g. AF01HAS.jpg (session A, female,
actor 01, happy, straight), in one folder or in sub-folders (the release keeps one folder per session and actor).

An actor is a subject (sex + id: "F01"); a session (A or B) photographed each actor on another occasion. Every
actor, session and angle has one neutral photo: an expression photo is compared with the neutral photo of its own
session and angle (the other session's when its own is missing). A neutral photo is compared with the *other*
session's neutral photo of the same angle (a reference taken at another moment, as a robot's is), or with itself
when that photo is missing.
"""
from __future__ import annotations

import re
from pathlib import Path

from fer_ros.classes import NEUTRAL

NAME = re.compile(r"^([AB])([FM])(\d{2})(AF|AN|DI|HA|NE|SA|SU)(FL|HL|S|HR|FR)$", re.IGNORECASE)
EXPRESSIONS: dict[str, str] = {"AF": "fear", "AN": "anger", "DI": "disgust", "HA": "happy", "NE": NEUTRAL,
                               "SA": "sadness", "SU": "surprise"}
ANGLES: tuple[str, ...] = ("FL", "HL", "S", "HR", "FR")
SUFFIXES = {".jpg", ".jpeg", ".png"}


def parse(path: Path) -> tuple[str, str, str, str, str] | None:
    """(session, sex, id, expression code, angle) of a KDEF file name, upper case; None when it is not one."""
    if path.suffix.lower() not in SUFFIXES:
        return None
    m = NAME.match(path.stem)
    return tuple(g.upper() for g in m.groups()) if m else None  # type: ignore[return-value]


def photos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and parse(p) is not None)


def detect(root: Path) -> bool:
    return any(parse(p) is not None for p in root.rglob("*") if p.is_file())


def load(root: Path, frames: int, angles: tuple[str, ...] | None = None):
    """Still-face sequences (the photo repeated `frames` times) with their neutral references (module docstring).
    angles: which angles to read (None: all). Returns (sequences, skipped file names, neutral frames keyed by
    (actor, session + angle))."""
    from fer_ros.training.data.datasets import Sequence
    found: dict[tuple[str, str, str, str], Path] = {}
    skipped = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in SUFFIXES:
            continue
        f = parse(p)
        if f is None:
            skipped.append(str(p.relative_to(root)))
            continue
        session, sex, ident, expr, angle = f
        if angles is not None and angle not in angles:
            continue
        key = (session, sex + ident, expr, angle)
        if key in found:  # the same photo twice (e.g. .jpg and .JPG copies): keep the first
            skipped.append(str(p.relative_to(root)))
            continue
        found[key] = p
    neutral = {(actor, session + angle): p for (session, actor, expr, angle), p in found.items() if expr == "NE"}
    seqs = []
    for (session, actor, expr, angle), p in sorted(found.items()):
        label = EXPRESSIONS[expr]
        own = neutral.get((actor, session + angle))
        other = neutral.get((actor, ("B" if session == "A" else "A") + angle))
        if expr == "NE":
            ref, borrowed = (other, True) if other is not None else (p, False)
        else:
            ref, borrowed = (own, False) if own is not None else (other, other is not None)
        seqs.append(Sequence(subject=actor, sequence=session + angle, label=label, peaks=[p] * frames,
                             neutral=ref, neutral_borrowed=borrowed, view=angle, name=p.stem.upper(), still=True))
    return seqs, skipped, neutral
