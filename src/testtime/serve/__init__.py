"""OpenAI-compatible gateway: ``testtime serve``, or ``create_app(config, backend)`` in code.

Modules: ``config`` (settings from file and environment), ``app`` (the factory), ``api``
(endpoints), ``routing`` (request → strategy), ``mapping`` (request → Problem), ``gateway``
(running a strategy under budget, deadline and limits), ``responses``/``streaming`` (OpenAI
bodies and SSE chunks), ``protection`` (keys, caps, concurrency), ``middleware`` (request ids,
size limit, access logs), ``metrics``, ``logs``, ``errors``. Nothing here is imported by
``testtime`` itself, so FastAPI stays an optional dependency.
"""
