"""`python -m seatguard` runs the CLI."""

from .cli import main

main()
