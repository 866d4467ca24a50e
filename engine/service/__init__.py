"""The engine as a service: the ZeroMQ server (server.py) and its result store (store.py)."""
