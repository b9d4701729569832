"""``wschat bench``: a WebSocket load tester that measures latency without coordinated omission.

``stats``, ``payload`` and the parsing half of ``report`` are pure; ``limits`` touches process
limits and sockets; ``runner`` drives the load with asyncio and the ``websockets`` client.
Importing this package loads nothing: import the module you need.
"""
