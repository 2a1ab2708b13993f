"""Helpers the tests import: servers on loopback, polling with a deadline, raw HTTP.

conftest.py files hold only fixtures and hooks; everything a test module imports by name
lives here."""
