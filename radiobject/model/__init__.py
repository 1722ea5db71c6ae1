"""The object model: ``Volume``, ``VolumeCollection``, ``RadiObject``, their views and the rules
they keep (identity by ID, the catalog, the one write path).

Nothing here imports torch; storage and file formats are below this layer, ingest and the CLI above.
"""
