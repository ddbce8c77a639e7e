"""The driver layer: the only code that blocks or awaits. A shared base (configuration, the
verbs, stats), the sync driver (threads) and the async driver (asyncio / uvloop), each turning
I/O outcomes into policy events and carrying out the policy's actions."""
