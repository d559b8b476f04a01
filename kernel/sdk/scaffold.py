"""`allele new KIND NAME`: a plugin folder with app.py, a proof document and a test."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).parent / "templates"
KINDS = ("strategy", "sensor", "exchange")


def scaffold(kind: str, name: str, parent: Path, author: str = "you") -> Path:
    """Create `parent/name/` for a new plugin of `kind`. Refuses to overwrite an existing folder."""
    if kind not in KINDS:
        raise ValueError(f"unknown plugin kind '{kind}' (choose one of {', '.join(KINDS)})")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
        raise ValueError(f"'{name}' is not a plugin name: use lowercase letters, digits and _, starting with a letter")
    target = parent / name
    if target.exists():
        raise FileExistsError(f"{target} already exists; choose another name or remove it")
    fields = {"name": name, "class_name": "".join(p.capitalize() for p in name.split("_")), "author": author}
    target.mkdir(parents=True)
    for template, out in ((TEMPLATES / kind / "app.py.tmpl", "app.py"),
                          (TEMPLATES / kind / "test_app.py.tmpl", f"test_{name}.py"),
                          (TEMPLATES / "proof.md.tmpl", "proof.md")):
        (target / out).write_text(Template(template.read_text()).substitute(fields))
    return target
