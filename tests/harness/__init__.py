"""What the test modules share: paths of the test pictures, the engine process, the installed
Inkscape extension, the GTK window drivers.

  paths     the repository, its test pictures and example photos
  engine    a real engine process (`Engine`), its folders, clients, job requests, the CLI (`cli`);
            fixtures `engine` (one tiny-model engine for the session), `client`, `fresh` (engines a
            test starts itself), `remote` (one engine serving 127.0.0.1 with CURVE keys, for the session)
  inkscape  the extension installed by install.py into a temporary profile, run as Inkscape runs it
            (`run_script`), inside Inkscape under Xvfb (`inkscape_runs`, `under_xvfb`); fixtures
            `setup` (one installed profile for the session), `ink` (per inkex version), `ink_1_2`
  gtk       the GTK drivers that read and press the extension's windows

The fixtures are registered for every test module by tests/conftest.py (pytest_plugins); a module
that defines a fixture of the same name gets its own instead.
"""

import pytest

# Their asserts say what failed (tests/conftest.py imports them before pytest would rewrite them itself).
pytest.register_assert_rewrite("tests.harness.engine", "tests.harness.inkscape")
