"""`python -m tidings.devtools` is `tidings dev`."""

import sys

from tidings.devtools.dev import main

sys.exit(main())
