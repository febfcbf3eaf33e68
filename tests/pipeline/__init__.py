# Under pytest's importlib mode this package is imported as the top-level `pipeline` (tests/ has no
# __init__.py), shadowing the real one; submodules (pipeline.download, …) are then found through the
# editable install, which points at one checkout. Searching this checkout's pipeline/ first makes
# the tests import the code next to them (a git worktree's, not the editable install's).
from pathlib import Path as _Path

__path__.append(str(_Path(__file__).resolve().parents[2] / "pipeline"))  # noqa: F821 - set by the import system
