"""Per-target hysteresis: never answered, then up at the first answer, then debounced."""

from __future__ import annotations

import pytest

from monitor.detect.hysteresis import Hysteresis, TargetState, count_states


def feed(h: Hysteresis, outcomes: str) -> list[bool]:
    """Feed rounds written as '+' (answered) and '-' (failed); the flips returned."""
    return [h.update(c == "+") for c in outcomes]


def test_starts_never_answered_neither_up_nor_down() -> None:
    """A new target is not up (no optimistic start) and not down (it never worked)."""
    h = Hysteresis(2, 2)
    assert h.state is TargetState.NEVER_ANSWERED
    assert not h.up and not h.down and not h.answered


def test_failures_before_the_first_answer_change_nothing() -> None:
    """A target that never answers never flips, however many rounds fail."""
    h = Hysteresis(2, 2)
    assert feed(h, "-" * 10) == [False] * 10
    assert h.state is TargetState.NEVER_ANSWERED


def test_first_answer_is_up_at_once() -> None:
    """The first answer flips to up without waiting for up_after rounds."""
    h = Hysteresis(2, 3)
    assert feed(h, "--+") == [False, False, True]
    assert h.up and h.answered


@pytest.mark.parametrize(
    ("rounds", "flips", "state"),
    [
        ("+-", "..", TargetState.UP),  # one lost round never flips anything
        ("+--", "..F", TargetState.DOWN),  # down_after failed rounds after an answer
        ("+--+", "..F.", TargetState.DOWN),
        ("+--++", "..F.F", TargetState.UP),  # up_after good rounds back
        ("+-+-", "....", TargetState.UP),  # alternating never reaches down_after
        ("---+--", ".....F", TargetState.DOWN),  # failures before the answer are not counted
    ],
)
def test_hysteresis_after_the_first_answer(rounds: str, flips: str, state: TargetState) -> None:
    """After the first answer: down after down_after failed rounds, up after up_after good ones
    (the first '+' flips from never answered: marked '.' here for the first answer)."""
    h = Hysteresis(2, 2)
    got = feed(h, rounds)
    first = rounds.index("+")
    assert got[first] is True
    got[first] = False
    assert "".join("F" if f else "." for f in got) == flips
    assert h.state is state


def test_states_are_the_metric_and_api_names() -> None:
    """The state values are the `state` label of dprk_monitor_targets and the API's keys."""
    assert [s.value for s in TargetState] == ["up", "down", "never_answered"]
    states = [TargetState.UP, TargetState.UP, TargetState.NEVER_ANSWERED]
    assert count_states(states) == {
        TargetState.UP: 2,
        TargetState.DOWN: 0,
        TargetState.NEVER_ANSWERED: 1,
    }
