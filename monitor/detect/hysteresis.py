"""Per-target up/down with hysteresis: `down_after` failed rounds to go down, `up_after` back up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Hysteresis:
    """One target. Starts up (optimistic) so that a fresh daemon reports no wave of downs."""

    down_after: int
    up_after: int
    up: bool = True
    _fails: int = 0
    _oks: int = 0

    def update(self, ok: bool) -> bool:
        """Feed one round's outcome (after re-probes); return True when `up` flipped."""
        if ok:
            self._fails = 0
            self._oks += 1
            if not self.up and self._oks >= self.up_after:
                self.up = True
                return True
        else:
            self._oks = 0
            self._fails += 1
            if self.up and self._fails >= self.down_after:
                self.up = False
                return True
        return False
