"""Per-target up/down with hysteresis: `down_after` failed rounds to go down, `up_after` back up.

A target starts in a third state, *never answered*: it is not up (nothing says it is; the old
optimistic start showed every silent address "up" for `down_after` rounds, then logged a wave
of "target down" and kept it red on the dashboards as if it had failed) and not down (it
never worked, so nothing failed). Its first answer makes it up at once: there is nothing to
debounce against, a lost probe cannot fake an answer. From then on the usual hysteresis.
A never-answered target's failures are not counted: a target that answers once and then fails
needs `down_after` failed rounds after that answer, as any other.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class TargetState(enum.StrEnum):
    """The values are the `state` label of `dprk_monitor_targets` and the API's count keys."""

    UP = "up"
    DOWN = "down"
    NEVER_ANSWERED = "never_answered"


@dataclass(slots=True)
class Hysteresis:
    """One target's state after hysteresis; starts never answered (see the module doc)."""

    down_after: int
    up_after: int
    state: TargetState = TargetState.NEVER_ANSWERED
    _fails: int = 0
    _oks: int = 0

    @property
    def up(self) -> bool:
        return self.state is TargetState.UP

    @property
    def down(self) -> bool:
        """Down after having answered: never-answered targets are not down."""
        return self.state is TargetState.DOWN

    @property
    def answered(self) -> bool:
        return self.state is not TargetState.NEVER_ANSWERED

    def update(self, ok: bool) -> bool:
        """Feed one round's outcome (after re-probes); return True when the state changed
        (a first answer included: `answered` was False before it)."""
        if self.state is TargetState.NEVER_ANSWERED:
            if not ok:
                return False
            self.state, self._oks = TargetState.UP, 1
            return True
        if ok:
            self._fails = 0
            self._oks += 1
            if self.state is TargetState.DOWN and self._oks >= self.up_after:
                self.state = TargetState.UP
                return True
        else:
            self._oks = 0
            self._fails += 1
            if self.state is TargetState.UP and self._fails >= self.down_after:
                self.state = TargetState.DOWN
                return True
        return False


def count_states(states: Iterable[TargetState]) -> dict[TargetState, int]:
    """How many of `states` are up, down and never answered (every key present)."""
    out = dict.fromkeys(TargetState, 0)
    for s in states:
        out[s] += 1
    return out
