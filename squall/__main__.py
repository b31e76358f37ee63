"""`python -m squall`."""

from squall.cli import main

main()
