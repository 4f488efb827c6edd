"""Route modules of the API, one per resource; each exposes `routes`."""
