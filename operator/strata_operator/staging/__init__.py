"""StagingVolume: one shared RWX scratch PVC per DAG run, expired after a TTL.

``naming`` (deterministic names), ``storageclass`` (choosing an RWX class),
``resources`` (the PVC and who uses it), ``reconcile`` (one StagingVolume),
``sweeper`` (the single periodic loop: expiry and orphans).
"""
