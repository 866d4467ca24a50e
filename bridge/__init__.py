"""The engine bridge: the ZeroMQ protocol, the engine server and the light client (no torch import)."""
