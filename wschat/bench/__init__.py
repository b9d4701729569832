"""``wschat bench``: a WebSocket load tester that measures latency without coordinated omission.

``config``, ``schedule``, ``stats``, ``payload``, ``html``, ``compare`` and the parsing half of
``report`` are pure; ``limits`` touches process limits and sockets; ``runner`` drives the load
with asyncio on ``connection`` (websockets' sans-I/O client); ``command`` is what the CLI calls.
Importing this package loads nothing: import the module you need.
"""
