"""Ingest service: validates gateway readings, stores them once, republishes them validated."""
