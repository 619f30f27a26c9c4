"""`python -m assistant` is the same as `dsr`."""

from .cli import main

main()
