"""Process limits a long-running site needs: the open-file limit.

A bridge holds one descriptor per HTTP client and a node one per open file; the
common soft limit of 1024 is reached by a busy control room or a flood of idle
sockets long before the hard limit. :func:`raise_open_files_limit` lifts the soft
limit to the hard one (children started afterwards inherit it).
"""

from __future__ import annotations

import resource

from twisted.logger import Logger

log = Logger(namespace="sisock")

#: Never ask for more than this (an "unlimited" hard limit is not a number to allocate for).
OPEN_FILES_CEILING = 1 << 20


def raise_open_files_limit() -> tuple[int, int]:
    """Raise ``RLIMIT_NOFILE``'s soft limit toward the hard limit; log the change.

    Returns ``(before, after)`` soft limits. Never fails: a refusal is logged."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = OPEN_FILES_CEILING if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_CEILING)
    if soft != resource.RLIM_INFINITY and soft >= target:
        return soft, soft
    if soft == resource.RLIM_INFINITY:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warn("could not raise the open-file limit from {soft} to {target}: {error}",
                 soft=soft, target=target, error=exc)
        return soft, soft
    log.info("raised the open-file limit from {soft} to {target} (hard limit {hard})",
             soft=soft, target=target, hard="unlimited" if hard == resource.RLIM_INFINITY else hard)
    return soft, target
