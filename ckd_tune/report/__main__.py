"""``python -m ckd_tune.report``: runs :func:`ckd_tune.report.cli.main`."""

import sys

from ckd_tune.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
