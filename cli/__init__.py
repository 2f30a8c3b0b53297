"""The `judgeline` command line: `main.py` holds the registry; one module per command family.
"""
