"""Guard rails: what a collision cannot do on a target, and what it undoes, said once and plainly.

Two kinds of warning, each given once per target by the KO optimizer (:class:`ko_hf.optim.CollisionMixin`), logged,
kept in ``optimizer.collision_warnings`` and, through ``KOTrainer.collision_warnings``, in the run's summary and its
model card:

- ``inert``, when the optimizer is built: a target on which the collision cannot act — one row (a regression or
  reward head: no partner), or two rows, where a softmax cross-entropy gradient has opposite rows (``g_1 = -g_0``),
  so soft collision only rescales them and hard collision only turns them to a random direction of the same norm
  (the paper's form) or tilts them by at most coll_coef of their norm (the bounded form).
- ``reversed``, over a window of steps: the mean over steps of the mean per-row ``cos(g*_i, g_i)`` below 0, so the
  collision turns that weight's gradient around on average and training fights it. Steps whose gradient was not
  finite (the collision left it unchanged) do not count.

Pure functions that build the messages; the optimizer decides when to call them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CollisionWarning", "inert_target_warning", "reversed_gradient_warning", "shape_text"]


@dataclass(frozen=True)
class CollisionWarning:
    """One guard-rail warning: the target it is about, its kind (``inert`` or ``reversed``), the optimizer step it
    was found at (0: when the optimizer was built) and the message."""

    target: str
    kind: str
    step: int
    message: str

    def __str__(self) -> str:
        return self.message


def shape_text(shape: Sequence[int]) -> str:
    return "×".join(str(size) for size in shape)


def inert_target_warning(name: str, shape: Sequence[int], collision: str, form: str = "bounded") -> str | None:
    """The message for a target on which ``collision`` (in ``form``) cannot act, or ``None`` when it can."""
    rows = shape[0] if shape else 0
    where = f"{name!r} ({shape_text(shape)})"
    if rows == 1:
        return (f"{collision} collision cannot act on {where}: a weight with one neuron (row) has no partner to "
                "collide with (a regression or reward head), so it trains exactly as with the base optimizer. Leave "
                "it out of collision_targets, or add a layer with several neurons (e.g. targets=['head', 'pooler']).")
    if rows != 2:
        return None
    opposite = ("with softmax cross-entropy the two rows of its gradient are opposite (g_1 = -g_0), so ")
    if collision == "soft":
        effect = ("soft collision only rescales them by the same factor, which the base optimizer's normalisation "
                  "all but undoes")
    elif form == "paper":
        effect = ("an accepted hard collision only turns the gradient to a random direction of the same norm, and "
                  "its one pair is accepted at almost any coll_coef (Eq. 7 divides by that pair's own speed)")
    else:
        effect = ("an accepted hard collision only adds a random tilt of at most coll_coef times its norm (the "
                  "bounded form), and its one pair is accepted at almost any coll_coef (Eq. 7 divides by that "
                  "pair's own speed)")
    return (f"{collision} collision on {where}, a two-class head: {opposite}{effect}. Add a layer with more neurons "
            "(targets=['head', 'pooler']) or train this head without collisions.")


def _reversed_advice(settings: Mapping[str, Any], rows: int) -> str:
    if settings.get("collision") == "hard" and rows == 2:
        return ("A 2-row head has one pair, which collides at almost any coll_coef, so lowering it does not help: add "
                "the pooler (collision_targets=['head', 'pooler']) or train this head without collisions")
    fixes = []
    if settings.get("collision_form") == "paper":
        fixes.append("collision_form='bounded'")
    if settings.get("collision") == "hard" and settings.get("collision_pairing") == "all":
        fixes.append("collision_pairing='dsmc'")
    if not fixes:
        return "Lower coll_coef"
    return (f"Use {' and '.join(fixes)} (the defaults: each neuron's change capped at coll_coef times its own "
            "gradient, each neuron collided at most once), or lower coll_coef")


def reversed_gradient_warning(name: str, shape: Sequence[int], settings: Mapping[str, Any], cosine: float,
                              first_step: int, last_step: int) -> str:
    """The message for a target whose mean per-row ``cos(g*, g)`` was ``cosine`` < 0 over steps
    ``first_step``..``last_step``; ``settings`` are its param group's (``collision``, ``coll_coef``, ...)."""
    collision = settings.get("collision")
    described = [f"coll_coef={settings.get('coll_coef')!r}", f"collision_form={settings.get('collision_form')!r}"]
    if collision == "hard":
        described.append(f"collision_pairing={settings.get('collision_pairing')!r}")
    steps = f"step {first_step}" if first_step == last_step else f"steps {first_step}-{last_step}"
    return (f"{collision} collision reverses the gradient of {name!r} ({shape_text(shape)}) on average: mean "
            f"per-row cos(g*, g) = {cosine:+.3f} < 0 over {steps} ({', '.join(described)}), so training fights it. "
            f"{_reversed_advice(settings, shape[0] if shape else 0)}.")
