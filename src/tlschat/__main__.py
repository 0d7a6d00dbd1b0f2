"""`python -m tlschat` runs the command line."""

from tlschat.cli import main

main()
