"""The ``hedge`` benchmark, standalone: fastpool/_bench/features/hedge.py holds the
measurement and says what it measures (it is also ``fastpool bench --modes hedge``);
``--help`` lists the options, some of which only this script has."""

import sys
from pathlib import Path

# run from a checkout: its fastpool (the module is fastpool._bench.features.hedge)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastpool._bench.features.hedge import main

if __name__ == "__main__":
    main()
