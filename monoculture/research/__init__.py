"""The researcher's side: simulated multi-party rounds (separate processes or one
process), synthetic populations and the benchmark. May import both roles.
"""
