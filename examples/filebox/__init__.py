"""filebox: the part of the example apps that knows no web framework.

``settings`` reads the configuration from environment variables, ``models``
holds the SQLAlchemy model and what the apps do with it (add, replace, delete),
``page`` renders the one HTML page of the two small apps. The Flask app
(``examples/flask_app.py``), the plain WSGI app (``examples/wsgi_app.py``) and
the Pyramid app (``examples/pyramid_app.py``) only add their routing.
"""
