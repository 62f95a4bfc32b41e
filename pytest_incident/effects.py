# The side-effect log of one replayed request: every outbound call the target attempted and
# what the sandbox did with it. Pure data; stubs and the tracer adapter append to it.
from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    SERVED = "served"  # answered from the recording
    HELD = "held"  # recorded as a timeout: accepted and never answered
    UNMATCHED = "unmatched"  # reached a stub, but the recording has no such call
    BLOCKED = "blocked"  # refused by the sandbox before the kernel ran it
    ALLOWED = "allowed"  # passed through live (sandbox.allow)
    EMAIL = "email"  # accepted by the SMTP stub, never delivered
    JOB = "job"  # enqueued into the job-queue stub, never dispatched


@dataclass(frozen=True)
class Effect:
    outcome: Outcome
    what: str  # "POST http://api.payments.example/v1/charges", "connect 127.0.0.1:6543"
    detail: str = ""  # "-> 200 (recorded #2)", the refusal reason, nearest candidates

    def render(self) -> str:
        line = f"{self.outcome.value:<9} {self.what}"
        if self.detail:
            first, *rest = self.detail.splitlines()
            line += f"  {first}"
            line += "".join(f"\n{'':<10}{more}" for more in rest)
        return line
