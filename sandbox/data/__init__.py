"""What providers bring and consumers take away: the vault of registered datasets, grants
(Art. 14), released products, the release step that signs them, and backups of a home.
"""
