"""Homomorphic-encryption aggregates: a consumer's encrypted values are summed per group of a
dataset inside worker processes; only ciphertexts leave.
"""
