"""The package's one-way dependency rules (docs: /ARCHITECTURE.md's target tree), read from the source with ``ast``:
nothing is imported, so a broken rule fails here with the offending module named, in well under a second."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "usdcop_assets"

# Module basenames that may repeat across packages. Each entry names the files, so a new repeat still fails.
ALLOWED_REPEATS = {"__init__.py": None}  # None: any number of packages


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    """Every module ``module`` imports, at any depth of the file (function-level imports count too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from usdcop_assets.defs.layers import l0_raw`` imports the submodule l0_raw
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


MODULES = _modules()
IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_scan_sees_the_package():
    # guards the rules below against passing vacuously (a moved test file, a wrong root)
    assert "usdcop_assets.defs.definitions" in MODULES and "usdcop_assets.rl.training" in MODULES
    assert any(_within(i, "dagster") for i in IMPORTS["usdcop_assets.defs.definitions"])
    assert "usdcop_assets.rl.costs" in IMPORTS["usdcop_assets.backtest.engine"]


def test_only_defs_and_the_cli_import_dagster():
    offenders = sorted(
        f"{name} imports {imp}"
        for name, imports in IMPORTS.items()
        if not (_within(name, "usdcop_assets.defs") or name == "usdcop_assets.cli")
        for imp in imports
        if imp == "dagster" or imp.startswith(("dagster.", "dagster_"))
    )
    assert offenders == []


def test_rl_never_imports_backtest():
    offenders = sorted(
        f"{name} imports {imp}"
        for name, imports in IMPORTS.items()
        if _within(name, "usdcop_assets.rl")
        for imp in imports
        if _within(imp, "usdcop_assets.backtest")
    )
    assert offenders == []


def test_no_asset_module_is_imported_by_another_module_of_the_package():
    """A helper two asset modules need lives in a pure package or in ``defs/`` itself, never in an asset module.
    Only ``defs/definitions.py`` (which collects the assets) may import the layer modules; tests may too."""
    layers = {name for name in MODULES if name.startswith("usdcop_assets.defs.layers.")}
    assert layers, "no layer modules found"
    offenders = sorted(
        f"{name} imports {imp}"
        for name, imports in IMPORTS.items()
        if name != "usdcop_assets.defs.definitions"
        for imp in imports
        if imp in layers and imp != name
    )
    # the CLI builds run config for the model asset from its own dg.Config class
    allowed = {"usdcop_assets.cli imports usdcop_assets.defs.layers.l5_model"}
    assert [o for o in offenders if o not in allowed] == []


def test_no_module_name_is_repeated_for_different_things():
    by_name: dict[str, list[str]] = {}
    for path in MODULES.values():
        by_name.setdefault(path.name, []).append(str(path.relative_to(PACKAGE)))
    repeated = {
        name: sorted(paths)
        for name, paths in by_name.items()
        if len(paths) > 1 and not (name in ALLOWED_REPEATS and ALLOWED_REPEATS[name] in (None, sorted(paths)))
    }
    assert repeated == {}


def test_the_vendor_clients_share_one_retry_loop():
    """TwelveData and FRED each supply one attempt to ``sources/http.py``'s ``with_retries``: neither sleeps
    between attempts nor counts them itself."""
    for name in ("usdcop_assets.sources.twelvedata", "usdcop_assets.sources.fred"):
        tree = ast.parse(MODULES[name].read_text())
        calls = {
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        }
        assert "with_retries" in calls, name
        assert not calls & {"sleep", "delay", "wait"}, (
            f"{name} has its own back-off: {sorted(calls & {'sleep', 'delay', 'wait'})}"
        )
