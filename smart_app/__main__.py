"""`python -m smart_app`: the zolgensma-smart command line."""

import sys

from smart_app.cli import main

sys.exit(main())
