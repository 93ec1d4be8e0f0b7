"""The real-browser test (a package, so its conftest never shadows tests/conftest.py as `conftest`)."""
