"""The chaos driver's modules sit beside their tests: `chaos.py` runs as a script and imports
them by name, and so do the tests of the checks."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
