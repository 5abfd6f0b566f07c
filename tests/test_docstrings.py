"""The public docstrings follow the NumPy format the API reference renders (issue [docs]):
every public function says its Parameters, Returns, Raises and shows an Example."""

import importlib
import inspect

PUBLIC_MODULES = (
    "adamflow",
    "adamflow.stability",
    "adamflow.problems",
    "adamflow.rules",
    "adamflow.validation",
    "adamflow.fileio",
    "adamflow.phase",
    "adamflow.symbolic",
    "adamflow.plotting",
    "adamflow.experiments",
)


def _sections(doc: str) -> set[str]:
    """The NumPy-style section titles of a docstring (a title line over a line of dashes)."""
    lines = [line.strip() for line in doc.splitlines()]
    return {
        title
        for title, rule in zip(lines, lines[1:])
        if title and set(rule) == {"-"} and len(rule) == len(title)
    }


def test_every_public_function_and_class_has_the_numpy_sections() -> None:
    """Every public function has Parameters (when it takes any), Returns, Raises and
    Examples; every public class has Parameters or Attributes, and Examples."""
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and not inspect.isclass(obj):
                obj = inspect.unwrap(obj)  # a functools.cache'd function is checked too
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not getattr(obj, "__module__", "").startswith("adamflow"):
                continue  # an alias of another package's object (PyTree = typing.Any)
            found = _sections(inspect.getdoc(obj) or "")
            if inspect.isclass(obj):
                needed = {"Examples"} | ({"Parameters"} if not found & {"Attributes"} else set())
            else:
                takes = bool(inspect.signature(obj).parameters)
                needed = {"Returns", "Raises", "Examples"} | ({"Parameters"} if takes else set())
            if needed - found:
                missing.append(f"{module_name}.{name}: {', '.join(sorted(needed - found))}")
    assert not missing, "\n".join(missing)
