"""The coordinator (run by the auditor): relays lists, counts patterns, publishes results.

It only ever sees blinded points, tags it opens for shared individuals only,
list sizes and the counts it publishes. See docs/THREAT_MODEL.md.
"""
