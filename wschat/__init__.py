"""wschat: a real-time chat server, a terminal chat client and a WebSocket load tester.

Importing this package loads no framework: only the version lives here.
"""

__version__ = "0.1.0"
