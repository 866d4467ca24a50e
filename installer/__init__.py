"""install.py's platform decisions, each a function of the platform and environment it is given.

Nothing here looks at the machine it runs on unless told to: the callers pass `sys.platform`,
`os.environ` and what they found, so that tests decide Windows and macOS questions on Linux.
Standard library only (install.py runs under any Python 3.10+, before any venv exists).

    locate.py   where Inkscape, its profile and its Python are
    pyzmq.py    a pyzmq that Inkscape's Python can import: which wheel, fetched and unpacked
    engine.py   the engine's virtual environment: its paths, and which PyTorch build to install
"""
