"""Reporting service: reports, timeliness, completeness and exact aggregation up the federation."""
