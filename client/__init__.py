"""The company daemon: runs next to a company's data and only dials out to the coordinator.

Ids and failure bits never leave it in the clear: ids leave only as blinded
curve points, failure bits only inside tags that only the coordinator can open.
"""
