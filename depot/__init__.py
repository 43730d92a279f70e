"""depot: store, serve and track the files of web applications.

Importing :mod:`depot` loads no backend and changes no global state; start with
:class:`depot.manager.DepotManager`.
"""

__version__ = "1.0.0.dev0"
