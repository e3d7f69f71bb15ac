"""``python -m chatgptt.emulator``: run the site emulator, with ``chatgptt emulator``'s options."""

from __future__ import annotations

import argparse
import sys

from chatgptt.emulator.command import add_arguments, main_from_args


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the emulator; the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m chatgptt.emulator", description="Emulate chatgptt.me on loopback."
    )
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
