"""Filters run on each file a field stores: :mod:`~depot.fields.filters.thumbnails` (Pillow)."""
