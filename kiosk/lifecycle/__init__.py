"""A model's life at the clinic (issue 16): drift alarms, site validation, surveillance from the
clinicians' decisions, shadow mode with promotion and rollback, and fleet metrics.

It sits above the pipeline and the store (it reads what they keep) and below the visit, the sync
destinations and the entry points (which call it).
"""
