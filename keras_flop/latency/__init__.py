"""Time on this device: the one timer (`timing`), latency tables and the latency cost (`table`),
and what the process runs on (`device`)."""
