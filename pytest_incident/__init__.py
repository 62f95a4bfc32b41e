"""pytest-incident: replay a production incident as a permanent regression test."""

__version__ = "0.1.0"
