"""`python -m assistant` is the same as `dsr`."""

from .cli import main

# Guarded: a second process started with `spawn` (assistant/preparer.py) imports this module
# again under another name, and must not run the CLI there.
if __name__ == "__main__":
    main()
