"""`python -m seedzoo ...` (and `torchrun -m seedzoo train ...`)."""

import sys

from seedzoo.cli import main

sys.exit(main())
