"""``python -m fieldpush.cli``: the ``fieldpush`` command."""

import sys

from fieldpush.cli import main

sys.exit(main())
