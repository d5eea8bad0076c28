"""`python -m tidings.local` is `tidings dev`."""

import sys

from tidings.local.stack import main

sys.exit(main())
