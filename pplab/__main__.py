"""``python -m pplab``: the same command as ``pplab``.

    python -m pplab simulate --schedule 1f1b --pp 4 --microbatches 8
"""

import sys

from pplab.cli.main import main

sys.exit(main())
