# A database write as the mutation log holds it: what the tap saw one statement do, with its
# outcome. Produced by the wire parsers (pytest_incident.protocols), compared with the
# recording (pytest_incident.core.writes) and snapshotted (pytest_incident.core.side_effects).
from __future__ import annotations

from dataclasses import dataclass

COMMITTED = "committed"
ROLLED_BACK = "rolled back"
FAILED = "failed"
AUTOCOMMIT = "autocommit"
PENDING = "pending"  # only while the transaction is still open


@dataclass(frozen=True)
class Mutation:
    sequence: int  # order within the connection, from 1
    statement: str  # SQL text as sent (one statement of a multi-statement Query)
    params: tuple[str | None, ...]  # bound parameters as text; binary ones decoded or "\x.."
    operation: str  # INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY, CREATE, ALTER, DROP, ...
    table: str  # target table, schema-qualified if written so; "" if unknown
    rows: int | None  # from the CommandComplete tag
    transaction: int  # 0 outside BEGIN ... COMMIT/ROLLBACK, else a per-connection counter
    outcome: str  # "committed" | "rolled back" | "failed" | "autocommit" ("pending" if open)
