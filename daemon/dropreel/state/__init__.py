"""State: the SQLite database (schema, rows, transitions) and the state folder's lock."""
