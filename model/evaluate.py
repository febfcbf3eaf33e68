"""`python -m model.evaluate`: the old name of `python -m model.eval.evaluate`, kept for one
release because ../shared/DESIGN.md lists it among the commands whose names stay. Use the new one."""
import sys

from model.eval.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
