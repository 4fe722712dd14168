"""``python -m ckd_tune.search``: runs :func:`ckd_tune.search.cli.main`."""

import sys

from ckd_tune.search.cli import main

if __name__ == "__main__":
    sys.exit(main())
