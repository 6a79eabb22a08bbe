"""``python -m reports RESULTS_DIR -o report.html``: see ``reports.build``."""

import sys

from reports.build import main

sys.exit(main())
