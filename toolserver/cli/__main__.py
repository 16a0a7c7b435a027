"""`python -m toolserver.cli` is the `toolserver` command."""

import sys

from toolserver.cli import main

sys.exit(main())
