"""tools/sqlmig.py loaded as the module `sqlmig` (a script with no package around it), for the
tests of the migration tool and of sql/ against migrations/."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
_spec = importlib.util.spec_from_file_location("sqlmig", ROOT / "tools" / "sqlmig.py")
assert _spec is not None and _spec.loader is not None
sqlmig = importlib.util.module_from_spec(_spec)
sys.modules["sqlmig"] = sqlmig  # its dataclasses look their module up there
_spec.loader.exec_module(sqlmig)
