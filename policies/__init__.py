"""What may happen: column classes, data grants, query admission and disclosure rules.

Pure functions over plain data. ``policies`` imports neither ``jobs`` nor ``sandbox``.
"""
