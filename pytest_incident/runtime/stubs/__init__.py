"""Stub servers the sandbox redirects recorded destinations to (DNS, HTTP)."""
