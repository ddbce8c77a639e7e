"""The ``pipeline`` benchmark, standalone: fastpool/_bench/features/pipeline.py holds the
measurement and says what it measures (it is also ``fastpool bench --modes pipeline``);
``--help`` lists the options, some of which only this script has."""

import sys
from pathlib import Path

# this checkout's fastpool, not an installed one (as when the script held the measurement)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastpool._bench.features.pipeline import main  # noqa: E402

if __name__ == "__main__":
    main()
