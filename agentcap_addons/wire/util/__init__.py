"""Small pieces the rest stands on: files written atomically, timestamps, JSON in and out, YAML with
line numbers for error messages."""
