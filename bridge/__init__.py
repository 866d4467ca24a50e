"""The light side of Sketch Abstraction: what a client needs to talk to the engine, and nothing more.

The ZeroMQ protocol (protocol.py), the connection file and per-user folders (connection.py), the
client (client.py), the job request classes with their JSON form (params.py), the errors a user can
act on (errors.py) and atomic file writes (atomic.py). Standard library, pyzmq and platformdirs
only: no torch, no numpy, no engine import, so the Inkscape extension vendors this one folder and
runs it under Inkscape's own Python. The engine (engine/) builds on it; the server that runs jobs
lives there (engine/service/).
"""
