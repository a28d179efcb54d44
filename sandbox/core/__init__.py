"""The platform's core: settings, the store and its schema, the hash-chained ledger, keys,
principals and their tokens, encrypted storage, and :class:`Platform`, which opens a home.

Core imports nothing else of ``sandbox``; every other package builds on it.
"""
