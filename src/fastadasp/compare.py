"""``python -m fastadasp.compare RUN_A RUN_B``: the paired comparison of two run folders on the
same samples (the logic: :mod:`fastadasp.analysis.compare`)."""

import sys

from fastadasp.analysis.compare import main

if __name__ == "__main__":
    sys.exit(main())
