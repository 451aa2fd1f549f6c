"""``dynin-rt serve``: an OpenAI-compatible HTTP server with request batching (the ``serve`` extra:
``pip install "dynin_rt[serve]"``).

app.py (routes) -> schemas.py (validation; inputs.py decodes media) -> service.py (queue a job, wait,
stream) -> batcher.py (batch window, max batch, max queue, cancellation) -> dynin_rt.batch (one
runtime call per batch) -> responses.py (OpenAI shapes). ray.py deploys the same app on Ray Serve.
Nothing here is imported by ``import dynin_rt``.
"""
