"""The lifecycle of one Scheduled Event on this node: its phases, the moves between them, what of it is
persisted on the Node and what the node's ``AzureScheduledEvent`` condition shows.

Every other module asks this one: the state record on the Node (:mod:`aksnth.kube.record`) keeps the
persisted phases, the condition (:mod:`aksnth.kube.conditions`) shows the active ones, the decision
(:mod:`aksnth.policy`) reads :class:`KnownEvent`, and the handler moves an event forward with
:meth:`Phase.advance`. Adding a phase means adding it here: its place in :data:`ORDER`, the moves into
and out of it in :data:`MOVES`, and whether it is persisted or shown.

A move to the phase an event is at, or to one it has already passed, leaves it where it is: every
step of a response is safe to run twice (a resumed response repeats the step it was in). A move
forward that :data:`MOVES` does not allow (approving what was never drained, reopening a concluded
event) is a bug and raises :class:`IllegalTransition`. Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from aksnth.model import EventStatus, EventType


class IllegalTransition(ValueError):
    """A move between two phases that the lifecycle does not allow."""


class Phase(enum.StrEnum):
    SEEN = "seen"  # the event concerns this node; nothing changed yet
    IGNORED = "ignored"  # its type is not acted on (shown only, never persisted)
    PREPARED = "prepared"  # an advisory's PreferNoSchedule taint is on the node (shown only)
    PROTECTED = "protected"  # labelled, cordoned, tainted
    DRAINED = "drained"  # the drain ran (whatever its result)
    APPROVED = "approved"  # StartRequests sent to IMDS
    GIVEN_BACK = "given_back"  # the event ended without killing the VM; our changes were undone
    FINISHED = "finished"  # the event ended; nothing to undo (the VM went away, or never protected)

    @property
    def rank(self) -> int:
        """Its place in :data:`ORDER`: an event only ever moves to a higher rank."""
        return ORDER.index(self)

    @property
    def concluded(self) -> bool:
        """Given back or finished: the event needs nothing more, and leaves the condition."""
        return self in (Phase.GIVEN_BACK, Phase.FINISHED)

    @property
    def persisted(self) -> bool:
        """Kept in the state record on the Node (a restarted handler resumes from it)."""
        return self not in (Phase.IGNORED, Phase.PREPARED)

    @property
    def shown(self) -> bool:
        """Shown in the ``AzureScheduledEvent`` condition's message (``Phase=…``)."""
        return not self.concluded

    @property
    def holds_node(self) -> bool:
        """The node is protected (cordoned) for the event and it is not concluded yet."""
        return Phase.PROTECTED.rank <= self.rank and not self.concluded

    def can_become(self, target: Phase) -> bool:
        """Whether :meth:`advance` to ``target`` is allowed (staying, or going back, always is)."""
        return target.rank <= self.rank or target in MOVES[self]

    def advance(self, target: Phase) -> Phase:
        """The phase after a step that reaches ``target``: ``target`` when it is further on, this phase
        when the event is there or further already. Raises :class:`IllegalTransition` for a move forward
        that the lifecycle does not allow."""
        if target.rank <= self.rank:
            return self
        if target not in MOVES[self]:
            allowed = ", ".join(sorted(p.value for p in MOVES[self])) or "none"
            raise IllegalTransition(
                f"an event at {self.value} cannot become {target.value} (allowed: {allowed})"
            )
        return target


#: The phases in the order an event goes through them.
ORDER: Final = tuple(Phase)

_ENDS: Final = frozenset({Phase.GIVEN_BACK, Phase.FINISHED})

#: The moves forward each phase allows. Any active event can end (given back, or finished); only a
#: protected node is drained, only a drained one approved.
MOVES: Final[Mapping[Phase, frozenset[Phase]]] = {
    Phase.SEEN: frozenset({Phase.IGNORED, Phase.PREPARED, Phase.PROTECTED}) | _ENDS,
    Phase.IGNORED: frozenset(),
    Phase.PREPARED: frozenset({Phase.PROTECTED}) | _ENDS,
    Phase.PROTECTED: frozenset({Phase.DRAINED}) | _ENDS,
    Phase.DRAINED: frozenset({Phase.APPROVED}) | _ENDS,
    Phase.APPROVED: _ENDS,
    Phase.GIVEN_BACK: frozenset({Phase.FINISHED}),
    Phase.FINISHED: frozenset(),
}


def done_phase(*, approve_events: bool) -> Phase:
    """The phase at which a response is complete: approved with -approveEvents, drained otherwise. A
    recorded event short of it is resumed by a restarted handler."""
    return Phase.APPROVED if approve_events else Phase.DRAINED


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownEvent:
    """What the handler remembers of an event it has seen (in memory, and on the node annotation)."""

    event_id: str
    event_type: EventType
    last_status: EventStatus
    responded: bool  # we started a response (cordon/drain) for it
    finished: bool = False  # given back, or left alone for good
    boot_id: str = ""  # the node's bootID when we responded
    resume: bool = False  # recorded on the node by an earlier run whose response did not finish
