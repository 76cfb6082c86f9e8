"""Retention policies (issue 3): they will read the lifecycle feed built by the core."""
