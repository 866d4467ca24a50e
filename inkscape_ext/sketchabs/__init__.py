"""The Sketch Abstraction extension's own code, importable under Inkscape's Python.

install.py puts the engine's light client (bridge, the torch-free engine.params) and the pure-Python
libraries it needs in `vendor/` next to this package; importing the package makes them importable.
"""

import os
import sys

_VENDOR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)
