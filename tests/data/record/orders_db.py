"""A small orders service (WSGI, served by wsgiref) for `pytest-incident record` tests:
POST /orders inserts the posted name into the table ORDERS_TABLE of the database
ORDERS_DSN names, and answers 201. Usage: python orders_db.py PORT"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import psycopg


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    name = json.loads(environ["wsgi.input"].read(length))["name"]
    table = os.environ["ORDERS_TABLE"]
    with psycopg.connect(os.environ["ORDERS_DSN"]) as conn:
        conn.execute(f"INSERT INTO {table} (name) VALUES (%s)", (name,))  # type: ignore[arg-type]
    start_response("201 Created", [("Content-Type", "application/json")])
    return [b'{"created": true}']


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


if __name__ == "__main__":
    make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet).serve_forever()
