"""The 5Ducks client's own routes: exact paths, camelCase shapes, the platform's error bodies."""
