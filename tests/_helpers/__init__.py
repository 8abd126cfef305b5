"""Helpers shared by several test files (importable as ``_helpers``: tests/conftest.py puts
the tests folder on ``sys.path``, since ``--import-mode=importlib`` gives test modules no
package to import siblings from).  Not collected: no ``test_`` names."""
