"""`python -m phoenix` is the `phoenix` command."""

import sys

from phoenix.cli import main

sys.exit(main())
