"""Errors a user can fix: the CLI prints them as one line and exits non-zero (no traceback)."""


class UserError(Exception):
    """Bad input or bad configuration: the message names what is wrong and where."""
