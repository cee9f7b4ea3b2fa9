"""Who acted and when: the stamp on every audit entry, record entry and promotion lock."""

from __future__ import annotations

import getpass
import os
import time


def who() -> str:
    """The user behind an action: getpass (LOGNAME/USER/..., then the password database), else $USER.

    In a container without a passwd entry for its uid getpass raises, hence the fallback.
    """
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return os.environ.get("USER", "unknown")


def now() -> str:
    """UTC to the second, ISO 8601: the record sorts and reads the same on every host."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
