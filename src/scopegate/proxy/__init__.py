"""Forwarding an allowed request (SPEC §3 steps 4–5): headers to send, the streaming exchange."""
