"""Paths the tests share (importable from any test module)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_GOLD = REPO_ROOT.parent / "shared" / "data" / "gold"
