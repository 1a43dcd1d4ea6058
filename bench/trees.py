"""Another checkout of emo, run beside this one with its own models.

``python -m emocli`` run in an older checkout (``git worktree add /tmp/old REV``) imports that
checkout's ``emocli``, but ``emocli.models``, absent from a source tree, then comes from the
editable install's mapping: this checkout's ``models/``. The older code would score with today's
models, or refuse them. :func:`use_own_models` gives the checkout an ``emocli/models`` package of
its own that points at its ``models/`` (links, in the checkout only), so its code runs on its models.
"""

from __future__ import annotations

from pathlib import Path


def use_own_models(tree: Path) -> Path:
    """Make ``emocli.models`` of ``tree`` resolve to ``tree/models``; return that folder."""
    tree = Path(tree).resolve()
    source, package = tree / "models", tree / "emocli" / "models"
    if not source.is_dir():
        raise SystemExit(f"{tree}: no models/ folder; give a checkout of the repository")
    package.mkdir(exist_ok=True)
    (package / "__init__.py").touch()
    for entry in source.iterdir():
        link = package / entry.name
        if not link.exists():
            link.symlink_to(entry)
    return source
