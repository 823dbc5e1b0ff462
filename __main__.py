"""`python -m visinstruct`: the same as the `visinstruct` command."""

import sys

from visinstruct.core.cli.main import main

sys.exit(main())
