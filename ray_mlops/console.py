"""The command line's consoles: fitted to a terminal, never wrapped or cut in a file or pipe.

Rich lays out for 80 columns when its output is not a terminal, so a summary table piped to a
file or read by a CI log cut paths with ``…`` and messages broke mid-line. Off a terminal the
consoles below are as wide as any line, and tables take the width of their content.
"""

from __future__ import annotations

from rich.console import Console

# Wider than any line the commands print; tables are not expanded, so they stay content-sized.
UNWRAPPED_WIDTH = 10_000


def cli_console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that wraps only on a terminal.

    Example:
        >>> cli_console(stderr=True).stderr
        True
    """
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=UNWRAPPED_WIDTH, soft_wrap=True)
