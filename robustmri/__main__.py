"""``python -m robustmri`` runs the command line."""

import sys

from robustmri.cli import main

sys.exit(main())
