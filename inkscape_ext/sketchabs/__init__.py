"""The Sketch Abstraction extension's own code, importable under Inkscape's Python.

install.py puts the light package (bridge/: client, protocol, request classes, errors) and the
libraries it needs (platformdirs, pyzmq where Inkscape's Python lacks it) in `vendor/` next to this
package; importing the package makes them importable.
"""

import os
import sys

_VENDOR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)
