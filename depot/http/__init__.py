"""The one HTTP core that serves stored files, and its front ends.

- :mod:`depot.http.rules`: RFC 9110's rules (validators, preconditions, ranges,
  dates) and the safe-serving rules (what is inline, Content-Disposition).
- :mod:`depot.http.facts`: what an answer needs of a stored file, once per version.
- :mod:`depot.http.answer`: the answer to one request, decided without I/O.
- :mod:`depot.http.serve`: routing, lookup and opening the body, shared by
  :mod:`depot.http.wsgi` (``depot.middleware``) and :mod:`depot.asgi`.
"""
