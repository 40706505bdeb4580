"""See runtime/__init__.py for what this package owns."""
