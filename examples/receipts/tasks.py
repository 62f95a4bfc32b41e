# Background jobs of the receipts demo service, run by an RQ worker listening on the
# `fulfilment` queue (`rq worker fulfilment`). The web app only enqueues them by name; a replay
# records the enqueue and never runs them.
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def fulfil(order_id: str) -> str:
    """Hand a paid order to the warehouse (a log line in this demo)."""
    log.info("fulfilling order %s", order_id)
    return order_id
