"""pytest puts tests/ on sys.path through this file; the shared helpers live in tests/testkit.py.

They are not imported as `conftest`: several folders have a conftest.py of their own, and
whichever is imported first under that name would shadow the others.
"""
