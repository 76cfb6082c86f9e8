"""Analyst replays (rebuild, as-of, what-if, exports): they import engine/, never the reverse."""
