"""`python -m visinstruct.core.cli`: the headless commands (the app opens from `visinstruct`)."""

import sys

from visinstruct.core.cli.main import main

sys.exit(main())
