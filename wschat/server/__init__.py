"""The chat server: a FastAPI app (``app.create_app``) and how to run it (``runner.serve``)."""
