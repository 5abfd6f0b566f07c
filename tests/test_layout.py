"""The package's shape: imports run downhill, ``import adamflow`` stays light, names cannot
be misread, and nothing cites a file users do not have."""

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import adamflow as af

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "adamflow"
HEAVY = ("matplotlib", "sympy", "sklearn", "optax", "tqdm", "adamflow.experiments")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _internal_imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports (at any depth of its code)."""
    name = _module_name(path)
    base_parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = base_parts[: len(base_parts) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            targets = [target] + [f"{target}.{alias.name}" for alias in node.names]
        found.update(t for t in targets if t in modules and t != name)
    return found


def test_no_import_circle():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _internal_imports(path, set(files)) for name, path in files.items()}
    # A package's __init__ re-exporting its own submodules is not a circle.
    graph = {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in graph.items()}
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not circles, circles


def test_library_never_imports_experiments_or_plotting():
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        if name.startswith(("adamflow.experiments", "adamflow.plotting")):
            continue
        text = path.read_text(encoding="utf-8")
        assert "experiments" not in _imports_text(text), name
        assert "plotting" not in _imports_text(text), name


def _imports_text(text: str) -> str:
    lines = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            lines += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            lines += [node.module or ""] + [alias.name for alias in node.names]
    return " ".join(lines)


def test_import_adamflow_loads_no_heavy_module():
    """The one subprocess check of a light import: ``import adamflow`` and the numeric
    stability module load none of the heavy modules (sympy among them), nor do the
    corrected flows' coefficients."""
    code = (
        "import sys, adamflow, adamflow.stability, adamflow._corrected as c\n"
        "c.corrected_constants(adamflow.KAdam(0.01, k=2), 2)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"import adamflow loaded {out}"


def test_no_public_argument_is_named_beta_or_gamma():
    checked = 0
    for module in (af, af.stability, af.problems):
        for name in getattr(module, "__all__", dir(module)):
            obj = getattr(module, name)
            if name.startswith("_") or not callable(obj):
                continue
            try:
                parameters = inspect.signature(obj).parameters
            except (TypeError, ValueError):
                continue
            checked += 1
            assert not {"beta", "gamma", "betas", "gammas"} & set(parameters), (name, parameters)
    assert checked > 20


def test_nothing_cites_a_file_users_do_not_have():
    offenders = []
    for path in ROOT.rglob("*"):
        if not path.is_file() or path.suffix not in {".py", ".md", ".toml", ".sh"}:
            continue
        if any(part.startswith(".") for part in path.relative_to(ROOT).parts):
            continue
        if "THEORY" + ".md" in path.read_text(encoding="utf-8", errors="replace"):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_scripts_use_public_names_only():
    for path in (ROOT / "scripts").glob("*.py"):
        imported = _imports_text(path.read_text(encoding="utf-8")).split()
        private = [m for m in imported if m.startswith("adamflow._") or "._" in m]
        assert not private, (path.name, private)


def _private_library_imports(path: Path) -> list[str]:
    """What ``path`` imports from the library's private modules or names: an absolute module
    path with a component starting with ``_`` outside ``path``'s own subpackage (for
    ``adamflow.experiments._timing`` from inside experiments, the subpackage's own business),
    or a private name imported from a library module."""
    name = _module_name(path)
    own = ".".join(name.split(".")[:2])  # e.g. adamflow.experiments
    base_parts = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules = [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = base_parts[: len(base_parts) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            modules = [(module, [alias.name for alias in node.names])]
        else:
            continue
        for module, names in modules:
            if not module.startswith("adamflow") or module.startswith(own + "."):
                continue
            parts = module.split(".")
            private = [p for p in parts if p.startswith("_")] + [
                n for n in names if n.startswith("_")
            ]
            if private:
                found.append(f"{module}: {', '.join(names) or '(module)'}")
    return found


def test_experiments_and_plotting_use_the_public_api_only():
    # The library answers questions; what uses it (experiments, drawing, scripts) reads only
    # its public names, so the private modules can change freely.
    users = [*(PACKAGE / "experiments").glob("*.py"), *(PACKAGE / "plotting").glob("*.py")]
    users += list((ROOT / "scripts").glob("*.py"))
    offenders = {p.name: found for p in users if (found := _private_library_imports(p))}
    assert not offenders, offenders


def test_every_public_module_declares_its_public_names():
    import importlib

    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        if any(part.startswith("_") and part != "__init__" for part in name.split(".")):
            continue  # private modules (and everything under them)
        if name.startswith(("adamflow.experiments.", "adamflow.plotting.")):
            continue  # the experiments' and drawings' own modules are not the library's API
        module = importlib.import_module(name)
        assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__"
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, (name, missing)
