"""Ladders as data: the customer ladder and any other (employees, dealers) declared in config."""
