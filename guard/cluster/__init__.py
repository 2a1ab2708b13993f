"""Cluster mode: several guard instances share their ceilings and rates through Redis.

Interpreted (never compiled) and never imported by guard.core or guard.proxy: the request
path reads only local limit cells, which the lease manager (guard.cluster.manager) sets.
See docs/CLUSTER.md.
"""
