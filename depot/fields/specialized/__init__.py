"""Values for particular kinds of file: :mod:`depot.fields.specialized.image` (needs Pillow)."""
