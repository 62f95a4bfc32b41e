# PostgreSQL wire protocol (3.0), sans-I/O: the writes one client connection made, in order,
# each with its outcome. `PgSession` is fed both directions' bytes, in any chunks; the proxy
# owns the sockets and answers SSLRequest/GSSENCRequest with `refuse_encryption_reply()`.
#
# One module per layer, each importing only the ones before it (no cycles):
#   framing  - message framing and field reading, the protocol's constants and its error;
#   params   - bound-parameter values as text (text and binary formats);
#   sql      - tokens, statement splitting, statement shapes, which tags are writes;
#   session  - PgSession, the connection's state machine (the only stateful layer).
# framing, params and sql are independent of one another; session drives all three.
#
# Invariants: this package re-exports the names its users import; the layers' private names
# are imported from their own modules.
from __future__ import annotations

from pytest_incident.model.errors import ProtocolError
from pytest_incident.model.mutations import (
    AUTOCOMMIT,
    COMMITTED,
    FAILED,
    PENDING,
    ROLLED_BACK,
    Mutation,
)
from pytest_incident.protocols.postgres.framing import (
    GSSENC_REQUEST,
    MAX_STARTUP,
    SSL_REQUEST,
    PostgresProtocolError,
    refuse_encryption_reply,
)
from pytest_incident.protocols.postgres.params import param_text
from pytest_incident.protocols.postgres.session import PgSession
from pytest_incident.protocols.postgres.sql import split_statements

__all__ = [
    "AUTOCOMMIT",
    "COMMITTED",
    "FAILED",
    "GSSENC_REQUEST",
    "MAX_STARTUP",
    "PENDING",
    "ROLLED_BACK",
    "SSL_REQUEST",
    "Mutation",
    "PgSession",
    "PostgresProtocolError",
    "ProtocolError",
    "param_text",
    "refuse_encryption_reply",
    "split_statements",
]
