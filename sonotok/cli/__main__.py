"""``python -m sonotok.cli ...`` == ``sonotok ...``."""

import sys

from sonotok.cli import main

sys.exit(main())
