"""The demo: embedded data sets and their classifications, and the flows ``sandbox demo`` runs
(SQL aggregates, PSI, HE and verification).
"""
