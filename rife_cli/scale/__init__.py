"""Scale-out: one input cut into shards (shards), the shards run on every device of a box
(devices: `--devices`, one worker process each) or on a Ray cluster's actors (ray_cluster: `--ray`).
"""
