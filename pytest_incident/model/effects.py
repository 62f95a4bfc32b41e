# The side-effect log of one replayed request: every outbound call the target attempted and
# what the sandbox did with it. Pure data; the stubs and the sandbox's events both become
# Effects, and pytest_incident.core.effect_log keeps them in order, stamped and attributed.
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Outcome(enum.Enum):
    SERVED = "served"  # answered from the recording
    HELD = "held"  # recorded as a timeout: accepted and never answered
    UNMATCHED = "unmatched"  # reached a stub, but the recording has no such call
    BLOCKED = "blocked"  # refused by the sandbox before the kernel ran it
    ALLOWED = "allowed"  # passed through live (sandbox.allow)
    EMAIL = "email"  # accepted by the SMTP stub, never delivered
    JOB = "job"  # enqueued into the job-queue stub, never dispatched


class EffectKind(enum.Enum):
    HTTP = "http"  # an outbound HTTP(S) call a stub answered
    EMAIL = "email"  # a message the SMTP stub accepted
    JOB = "job"  # a job the job-queue stub recorded
    NETWORK = "network"  # a connect or send the sandbox decided (blocked, allowed, dropped)
    PLUGIN = "plugin"  # what a plugin's port stub recorded


_KIND_OF = {Outcome.EMAIL: EffectKind.EMAIL, Outcome.JOB: EffectKind.JOB}


@dataclass(frozen=True)
class Effect:
    outcome: Outcome
    what: str  # "POST http://api.payments.example/v1/charges", "connect 127.0.0.1:6543"
    detail: str = ""  # "-> 200 (recorded #2)", the refusal reason, nearest candidates
    kind: EffectKind | None = None  # None: from the outcome (email, job), else plugin
    # when it happened, on the monotonic clock (0: stamped when logged); not part of equality
    at_ns: int = field(default=0, compare=False)
    late_after: str | None = None  # it came after request X had answered: X ("" = none yet)

    def __post_init__(self) -> None:
        if self.kind is None:
            object.__setattr__(self, "kind", _KIND_OF.get(self.outcome, EffectKind.PLUGIN))

    @property
    def late(self) -> bool:
        return self.late_after is not None

    def render(self) -> str:
        line = f"{self.outcome.value:<9} {self.what}"
        detail = self.detail
        if self.late_after is not None:
            when = f"after request {self.late_after}" if self.late_after else "before any request"
            detail = f"{detail}  [late: {when}]"
        if detail:
            first, *rest = detail.splitlines()
            line += f"  {first}"
            line += "".join(f"\n{'':<10}{more}" for more in rest)
        return line
