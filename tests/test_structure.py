"""The package's shape: every module imports alone, the import graph has no cycle and goes one
way between subpackages, the top level holds the shared base only, the README's layout table
names every module, no function is over 60 lines and no module over 300."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmlubench"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(node: ast.AST, here: str) -> list[str]:
    """Module names an import statement names (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = here if MODULES[here].name == "__init__.py" else here.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    # `from pkg import name`: name may be a submodule or an attribute of pkg.
    return [base] + [f"{base}.{a.name}" for a in node.names]


def imports_of(name: str) -> set[str]:
    """mmlubench modules `name` imports when run (module level or inside functions; not the
    imports under `if TYPE_CHECKING:`, which never run). Importing a.b.c imports a.b too."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for body in node.body
        for n in ast.walk(body)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        for target in _imported(node, name):
            while target.startswith("mmlubench."):
                if target in MODULES:
                    found.add(target)
                target = target.rpartition(".")[0]
    found.discard(name)
    found.discard("mmlubench")  # the package's own __init__ (a version string)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_import_graph_is_acyclic() -> None:
    graph = {name: imports_of(name) for name in MODULES}
    assert graph["mmlubench.report.table"] >= {"mmlubench.results.document", "mmlubench.display"}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# The subpackages in import order: a module may import the top-level modules (the shared base:
# errors, safefile, typed, yamlfile, display), its own subpackage and the ones before it here,
# never one after it. `__main__` is the command's entry and may import the command line.
LAYERS = (
    "device",
    "data",
    "engines",
    "config",
    "results",
    "model",
    "ceiling",
    "run",
    "report",
    "cli",
)
MAX_TOP_LEVEL_MODULES = 8  # besides the subpackages; __init__ and __main__ included
README = PACKAGE.parent / "README.md"


def layer(name: str) -> int:
    """Where module `name` stands in LAYERS: -1 for the top-level base, len(LAYERS) for
    `mmlubench.__main__`."""
    parts = name.split(".")
    if name == "mmlubench.__main__":
        return len(LAYERS)
    if len(parts) == 2 and not (PACKAGE / parts[1]).is_dir():
        return -1
    return LAYERS.index(parts[1])


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every `a -> b` of `graph` where b's subpackage comes after a's (the base counts as before
    every subpackage)."""
    return sorted(f"{a} -> {b}" for a, bs in graph.items() for b in bs if layer(b) > layer(a))


def test_upward_imports_are_found() -> None:
    assert upward_imports({"mmlubench.data.mmlu": {"mmlubench.run.runner"}}) == [
        "mmlubench.data.mmlu -> mmlubench.run.runner"
    ]
    assert upward_imports({"mmlubench.errors": {"mmlubench.device.accel"}}) == [
        "mmlubench.errors -> mmlubench.device.accel"
    ]
    assert (
        upward_imports(
            {"mmlubench.run.runner": {"mmlubench.data.mmlu", "mmlubench.errors", "mmlubench.run"}}
        )
        == []
    )


def test_subpackages_import_one_way() -> None:
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == set(LAYERS), "every subpackage has its place in LAYERS"
    graph = {name: imports_of(name) for name in MODULES}
    assert graph["mmlubench.run.runner"] >= {"mmlubench.run.rundir", "mmlubench.results.assemble"}
    assert upward_imports(graph) == [], "imports against the order of LAYERS"


def test_the_run_reaches_the_device_through_its_device_object() -> None:
    """run/ holds one `Device` (device/device.py); besides it only energy.pass_energy, the
    arithmetic over every rank's readings."""
    graph = {name: imports_of(name) for name in MODULES if name.startswith("mmlubench.run.")}
    reached = {b for bs in graph.values() for b in bs if b.startswith("mmlubench.device")}
    assert "mmlubench.device.device" in reached
    assert reached <= {"mmlubench.device", "mmlubench.device.device", "mmlubench.device.energy"}


def test_top_level_holds_the_base_only() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("sub", LAYERS)
def test_each_subpackage_says_its_role(sub: str) -> None:
    """The `__init__`'s docstring opens with the subpackage's role in at most two lines."""
    doc = ast.get_docstring(ast.parse((PACKAGE / sub / "__init__.py").read_text("utf-8")))
    assert doc, f"{sub}/__init__.py has no docstring"
    assert len(doc.split("\n\n")[0].splitlines()) <= 2


def layout_section(text: str) -> str:
    """The README's "Layout" section."""
    return text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]


def test_readme_layout_names_every_module() -> None:
    table = layout_section(README.read_text(encoding="utf-8"))
    paths = [
        p.relative_to(PACKAGE).as_posix()
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name != "__init__.py" or p.parent == PACKAGE
    ]
    missing = [p for p in paths if f"`{p}`" not in table]
    assert missing == [], "modules missing from the README's layout table"
    subs = [p.name for p in sorted(PACKAGE.iterdir()) if (p / "__init__.py").is_file()]
    assert [s for s in subs if f"`{s}/`" not in table] == []


def _import_alone(name: str) -> tuple[str, int, str]:
    done = subprocess.run(
        [sys.executable, "-c", f"import {name}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PACKAGE.parent,
    )
    return name, done.returncode, done.stderr[-1500:]


def test_each_module_imports_alone() -> None:
    """Each module in a fresh interpreter, first of the package: none relies on another
    having been imported before it."""
    names = [n for n in MODULES if n != "mmlubench.__main__"]  # runs the command line
    with ThreadPoolExecutor(max_workers=2) as pool:
        failed = [(n, err) for n, rc, err in pool.map(_import_alone, names) if rc != 0]
    assert failed == [], "\n\n".join(f"{n}:\n{err}" for n, err in failed)


def function_sizes() -> list[tuple[str, int]]:
    """(module:line function, lines) of every function and method in the package."""
    out = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"
                out.append((where, node.end_lineno - node.lineno + 1))
    return out


def test_no_function_over_60_lines() -> None:
    sizes = function_sizes()
    assert len(sizes) > 100  # the walk found the package's functions
    long = sorted((f"{where} ({n} lines)" for where, n in sizes if n > MAX_FUNCTION_LINES))
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_at_most_300_lines(name: str) -> None:
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{MODULES[name]}: {lines} lines"


# The NVIDIA plug-in is the one module that may call torch.cuda; everything else
# goes through device/accel.py (torch.accelerator) or the vendor plug-in.
CUDA_ALLOWED = {"mmlubench.device.vendors.nvidia"}


def _reaches_cuda(node: ast.AST) -> bool:
    """`torch.cuda`, `import torch.cuda`, `from torch import cuda`, `from torch.cuda import
    ...` or `getattr(torch, "cuda")`."""
    if isinstance(node, ast.Attribute):
        return node.attr == "cuda" and isinstance(node.value, ast.Name) and node.value.id == "torch"
    if isinstance(node, ast.Import):
        return any(a.name == "torch.cuda" or a.name.startswith("torch.cuda.") for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").startswith("torch.cuda") or (
            node.module == "torch" and any(a.name == "cuda" for a in node.names)
        )
    if isinstance(node, ast.Call):
        return (
            isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value == "cuda"
        )
    return False


def cuda_uses(source: str) -> list[int]:
    """Lines of `source` whose code reaches torch.cuda (comments and docstrings do not count)."""
    return sorted(n.lineno for n in ast.walk(ast.parse(source)) if _reaches_cuda(n))


def test_cuda_uses_are_found() -> None:
    assert (
        cuda_uses(
            '"""torch.cuda in a docstring."""\n# torch.cuda.synchronize()\n'
            'x = "torch.cuda"\nv = torch.version.cuda\n'
        )
        == []
    )
    assert cuda_uses(
        "import torch\ntorch.cuda.synchronize()\nimport torch.cuda.memory\n"
        "from torch import cuda\nfrom torch.cuda import amp\n"
        "m = getattr(torch, 'cuda')\n"
    ) == [2, 3, 4, 5, 6]


def test_no_torch_cuda_outside_the_nvidia_plugin() -> None:
    found = [
        f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}"
        for name in sorted(MODULES)
        if name not in CUDA_ALLOWED
        for line in cuda_uses(MODULES[name].read_text(encoding="utf-8"))
    ]
    assert found == [], "torch.cuda outside the NVIDIA plug-in (use device/accel.py):\n" + (
        "\n".join(found)
    )
    assert cuda_uses(MODULES["mmlubench.device.vendors.nvidia"].read_text(encoding="utf-8"))
