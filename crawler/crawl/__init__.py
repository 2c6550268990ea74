"""The run: the engine and the parts it assembles (frontier, host leases, politeness,
robots.txt, the writer and its group commits, progress, sinks, the event log)."""
