"""The policy layer: sans-IO decisions shared by Pool and AsyncPool.

Objects here take events and `now` (CLOCK_MONOTONIC nanoseconds) and return decisions or
actions. They never sleep, lock, await, read a clock or touch a socket, so a test drives them
with a fake clock. The drivers (fastpool._drivers) wait and carry the decisions out.
"""
