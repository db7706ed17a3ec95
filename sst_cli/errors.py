"""Errors a user can cause. The CLI prints their message (one sentence) and exits non-zero."""


class SSTError(Exception):
    """A user-facing failure: bad path, corrupt image, wrong checkpoint, unavailable backend, OOM."""

    exit_code = 1
