"""Errors a user can cause. The CLI prints their message (one sentence) and exits non-zero."""


class SSTError(Exception):
    """A user-facing failure: bad path, corrupt image, wrong checkpoint, unavailable backend, OOM."""

    exit_code = 1


class UsageError(SSTError):
    """A mistake on the command line (exit code 2), found before any image is touched."""

    exit_code = 2
