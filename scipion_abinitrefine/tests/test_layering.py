"""The engine stands alone: no Scipion, no test oracles, nothing from the layers above it."""
import ast
import os

import scipion_abinitrefine.engine as engine

ENGINE = os.path.dirname(engine.__file__)
FORBIDDEN = ("pyworkflow", "pwem", "relion", "scipion_abinitrefine.protocols", "scipion_abinitrefine.viewers",
             "scipion_abinitrefine.wizards", "scipion_abinitrefine.convert", "scipion_abinitrefine.testing",
             "scipion_abinitrefine.tests")


def imports_of(path):
    """Every module name an engine file imports (relative imports resolved against the engine package)."""
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.module
                continue
            base = "scipion_abinitrefine.engine" if node.level == 1 else "scipion_abinitrefine"
            tail = " (relative, upward)" if node.level > 1 else ""  # ``from ..x``: above the engine
            if node.module:
                yield f"{base}.{node.module}{tail}"
            else:  # ``from . import a, b``
                yield from (f"{base}.{a.name}{tail}" for a in node.names)


def test_engine_imports_nothing_above_it():
    bad = []
    for name in sorted(os.listdir(ENGINE)):
        if name.endswith(".py"):
            for mod in imports_of(os.path.join(ENGINE, name)):
                if "upward" in mod or mod.split(".")[0] in FORBIDDEN or mod.startswith(FORBIDDEN):
                    bad.append(f"{name}: {mod}")
    assert not bad, bad
    # the check sees the engine's own imports (it would see a forbidden one)
    assert "scipion_abinitrefine.engine.so3" in set(imports_of(os.path.join(ENGINE, "align.py")))
