"""The plan: what to send, how hard, for how long, and what to judge."""
