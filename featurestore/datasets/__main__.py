"""``python -m featurestore.datasets build|list``: see :mod:`featurestore.datasets.build`."""

import sys

from featurestore.datasets.build import main

if __name__ == "__main__":
    sys.exit(main())
