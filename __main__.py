"""`python -m visinstruct`: the same as the `visinstruct` command."""

import sys

from visinstruct.entry import main

sys.exit(main())
