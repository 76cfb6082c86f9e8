"""Asyncio edges (Kafka via faust, Redis): they import engine/, never the reverse."""
