"""Private set intersection on the platform's side: sessions and terms, the match run inside
the sandbox, its tables, and the worker that computes a match.
"""
