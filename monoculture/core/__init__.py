"""The shared core: everything both roles need, and no network I/O.

`psi_crypto` is the only module that imports openmined-psi.
"""
