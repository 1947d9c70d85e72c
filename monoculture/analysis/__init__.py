"""Every figure a user sees, computed once from a `PatternTable`: metrics,
inference, disclosure control and differential privacy. Pure: no I/O.
"""
