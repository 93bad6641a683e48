"""The import layering of docs/ARCHITECTURE.md, enforced on every module of the package.

Each top-level room of ``sonotok/`` has a rank; a module may import its own room and rooms of a strictly
lower rank, never a higher or an equal one (so two rooms of one rank stay independent of each other).
Imports inside functions count as much as module-level ones.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "sonotok"

RANK = {
    "errors": 0,
    "modules": 1, "quantizers": 1, "metrics": 1, "data": 1,
    "discriminators": 2, "losses": 2, "semantic": 2,
    "models": 3,
    "model_io": 4,
    "tokenizer": 5, "export": 5,
    "evaluation": 6,
    "training": 7,
    "sonotok": 8,  # the package entry (sonotok.load, __version__): only the command line imports it
    "cli": 9,
}

# (importing module, imported room): why the exception exists.
ALLOWED = {
    ("sonotok.models.codec", "tokenizer"):
        "Codec.encode_file / encode_batch / decode_batch are thin public wrappers over sonotok.tokenizer.ops "
        "(imported inside the methods)",
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sonotok"


def _modules():
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        yield f, name


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "sonotok":
            if node.module == "sonotok":  # from sonotok import x: x may be a room
                for a in node.names:
                    yield f"sonotok.{a.name}" if a.name in RANK else "sonotok", node.lineno
            else:
                yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "sonotok":
                    yield a.name, node.lineno


def test_every_room_has_a_rank():
    rooms = {_room(name) for _, name in _modules()}
    assert rooms <= set(RANK), f"rooms without a rank in docs/ARCHITECTURE.md / this test: {rooms - set(RANK)}"


def test_no_module_imports_upward():
    bad = []
    for path, name in _modules():
        src = _room(name)
        for target, line in _imports(path):
            dst = _room(target)
            if dst == src or (name, dst) in ALLOWED:
                continue
            if RANK[dst] >= RANK[src]:
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: {src} (rank {RANK[src]}) imports {target} "
                           f"({dst}, rank {RANK[dst]})")
    assert not bad, "imports against the layering of docs/ARCHITECTURE.md:\n" + "\n".join(bad)


def test_exceptions_are_still_needed():
    used = set()
    for path, name in _modules():
        for target, _ in _imports(path):
            used.add((name, _room(target)))
    stale = set(ALLOWED) - used
    assert not stale, f"layering exceptions that no longer occur (remove them): {stale}"


def test_top_level_holds_only_the_entry_errors_and_model_format():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert top == ["__init__.py", "errors.py", "model_io.py"], top


def test_no_module_shadows_the_standard_library():
    import sys

    stdlib = set(sys.stdlib_module_names)
    clash = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if p.stem in stdlib]
    assert not clash, f"modules named like the standard library (break running files as scripts): {clash}"
