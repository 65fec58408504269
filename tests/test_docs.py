"""The documentation cannot drift from the code.

- every hook spec is documented in docs/writing-plugins.md, with its exact signature,
  and has a ``test_hook_<name>`` test (as datasette does for its hooks);
- the Python in docs/writing-plugins.md compiles, and its skeleton plugin and test run;
- the site-file reference in docs/operating.md is the one generated from the attrs
  classes of sisock_core/config.py and of every bundled plugin's options;
- every environment variable the core reads and every ``sisock`` command is in
  docs/operating.md; relative links in docs/ and README.md resolve.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import tomllib
import types
from pathlib import Path

import pytest

from sisock_core import hookspecs
from sisock_core.introspect import (
    bundled_plugins,
    generated_block,
    plugin_section,
    reference_markdown,
    reference_sections,
)

ROOT = Path(__file__).resolve().parent.parent
WRITING = ROOT / "docs" / "writing-plugins.md"
OPERATING = ROOT / "docs" / "operating.md"
EXAMPLE = ROOT / "examples" / "sisock-plugin-example"

HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
               if hasattr(fn, "sisock_spec"))


def test_there_are_hooks():
    assert {"sisock_plugin_spec", "node_start", "node_stop", "list_fields", "read_range",
            "subscribe"} <= set(HOOKS)


def signature(name: str) -> str:
    """``name(arg: Type, ...) -> Type`` as written in the hook spec."""
    sig = inspect.signature(getattr(hookspecs, name))
    args = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{name}({args}) -> {sig.return_annotation}"


def hook_section(name: str) -> str:
    text = WRITING.read_text()
    start = text.find(f"\n### `{name}`\n")
    assert start >= 0, f"hook {name} has no '### `{name}`' section in {WRITING.name}"
    end = text.find("\n## ", start + 1)
    nxt = text.find("\n### ", start + 1)
    return text[start:min(i for i in (end, nxt, len(text)) if i >= 0)]


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented(name):
    section = hook_section(name)
    assert f"\n{signature(name)}\n" in section, \
        f"the signature in {WRITING.name} differs from the spec: {signature(name)}"
    firstresult = getattr(hookspecs, name).sisock_spec["firstresult"]
    assert ("first result" in section.lower()) == firstresult, \
        f"{WRITING.name} must say whether {name} is a first-result hook"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_test(name):
    pattern = re.compile(rf"^def test_hook_{name}\(", re.M)
    files = [p.name for p in (ROOT / "tests").glob("test_*.py") if pattern.search(p.read_text())]
    assert files, f"no test named test_hook_{name} in tests/"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def test_python_in_the_docs_compiles():
    blocks = python_blocks(WRITING)
    assert len(blocks) >= 4
    for i, code in enumerate(blocks):
        compile(code, f"{WRITING.name} python block {i}", "exec")


def test_skeleton_plugin_and_its_test_run(sisock_node, monkeypatch):
    blocks = python_blocks(WRITING)
    (skeleton,) = [b for b in blocks if b.startswith('"""A plugin serving one constant field')]
    (test_code,) = [b for b in blocks if "def test_level(" in b]
    module = types.ModuleType("sisock_plugin_foo")
    exec(compile(skeleton, "skeleton", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "sisock_plugin_foo", module)
    namespace: dict = {}
    exec(compile(test_code, "test_level", "exec"), namespace)
    namespace["test_level"](sisock_node)


def test_documented_package_layout_matches_the_example():
    text = WRITING.read_text()
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["sisock.plugins"] == {"example": "sisock_plugin_example"}
    assert '[project.entry-points."sisock.plugins"]' in text
    assert 'pytest_plugins = ["sisock_core.testing"]' in (EXAMPLE / "tests" / "conftest.py").read_text()
    assert 'pytest_plugins = ["sisock_core.testing"]' in text


pytest_plugins = ["sisock_core.testing"]


# -- docs/operating.md -------------------------------------------------------------------


def test_operating_reference_is_generated_from_the_code():
    plugins = bundled_plugins()
    assert plugins, "no bundled plugins installed"
    block = generated_block(OPERATING.read_text())
    assert block is not None, f"{OPERATING.name} lost its generated block"
    hint = "run: python -m sisock_core.introspect --write docs/operating.md"
    if not any(p.error for p in plugins):
        assert block == reference_markdown(plugins), hint
        return
    # Some bundled plugin cannot be imported without its extras (a tox env with one
    # plugin's extras): check the sections this environment can generate.
    loadable = [p for p in plugins if not p.error]
    for section in reference_sections(loadable):
        assert section in block, f"stale section {section.splitlines()[0]!r}; {hint}"
    for p in plugins:
        assert f"### Plugin `{p.name}`" in block, hint


def test_every_option_of_every_bundled_plugin_is_in_the_reference():
    block = generated_block(OPERATING.read_text())
    for p in bundled_plugins():
        if p.error:
            continue
        section = "\n".join(plugin_section(p))
        for option in p.options:
            assert f"| `{option.name}` |" in section and section in block, (p.name, option.name)


def test_top_level_keys_are_documented():
    from sisock_core.config import SiteConfig

    text = OPERATING.read_text()
    tables = {"path", "router", "hub", "http", "nodes"}
    for field in SiteConfig.__attrs_attrs__:
        if field.name not in tables:
            assert f"| `{field.name}` |" in text, f"site-file key {field.name} is undocumented"


def env_vars_read(path: Path) -> set[str]:
    """Environment variables a module reads: ``environ.get("X")``, ``env["X"]``,
    ``"X" in env``, ``X_ENV = "X"`` constants and ``for var, ... in (("X", ...), ...)``
    loops feeding an ``*env*`` call."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def is_name(value: object) -> bool:
        return isinstance(value, str) and bool(re.fullmatch(r"[A-Z][A-Z0-9_]+", value))

    def envish(node: ast.AST) -> bool:
        return "env" in ast.unparse(node).lower()

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            receiver = func.value if isinstance(func, ast.Attribute) else None
            if (name in ("get", "getenv") and receiver is not None and envish(receiver)) or \
                    ("env" in name.lower() and name not in ("setdefault",)):
                if is_name(node.args[0].value):
                    found.add(node.args[0].value)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and envish(node.value):
            if isinstance(node.slice, ast.Constant) and is_name(node.slice.value):
                found.add(node.slice.value)
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and \
                any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) and \
                any(envish(c) for c in node.comparators) and is_name(node.left.value):
            found.add(node.left.value)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                any(isinstance(t, ast.Name) and "ENV" in t.id for t in node.targets) and \
                is_name(node.value.value):
            found.add(node.value.value)
        elif isinstance(node, ast.For) and isinstance(node.iter, (ast.Tuple, ast.List)) and \
                any(envish(n) for n in node.body):
            for item in node.iter.elts:
                if isinstance(item, ast.Tuple) and item.elts and isinstance(item.elts[0], ast.Constant) \
                        and is_name(item.elts[0].value):
                    found.add(item.elts[0].value)
    return found


#: Variables the core sets for its own children, not for operators.
INTERNAL_ENV = {"SISOCK_ROUTER_PARENT", "PYTHONUNBUFFERED"}


def test_environment_variables_are_documented():
    read: dict[str, str] = {}
    for path in sorted((ROOT / "sisock_core").rglob("*.py")):
        for var in env_vars_read(path):
            read.setdefault(var, str(path.relative_to(ROOT)))
    # the collector must see the well-known ones, or this test proves nothing
    assert {"CROSSBAR_HOST", "CROSSBAR_TLS_PORT", "PORT", "LOGLEVEL", "MAX_POINTS", "WAMP_SECRET",
            "SISOCK_STATE_DIR", "SISOCK_CONFIG", "SISOCK_TRACE_PLUGINS"} <= set(read)
    text = OPERATING.read_text()
    table = text[text.index("## Environment variables"):text.index("## Several machines")]
    missing = {var: where for var, where in read.items()
               if var not in INTERNAL_ENV and f"| `{var}` |" not in table}
    assert not missing, f"environment variables read but not in {OPERATING.name}: {missing}"


def test_every_command_is_documented():
    from sisock_core.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    text = OPERATING.read_text()
    for command in sub.choices:
        assert f"`sisock {command}" in text, f"command sisock {command} is not in {OPERATING.name}"


@pytest.mark.parametrize("doc", ["README.md", "docs/writing-plugins.md", "docs/operating.md"])
def test_relative_links_resolve(doc):
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if "://" in target:
            continue
        assert (path.parent / target).exists(), f"{doc}: broken link {target}"


def test_readme_points_to_the_docs():
    text = (ROOT / "README.md").read_text()
    assert "docs/writing-plugins.md" in text and "docs/operating.md" in text


def test_docstrings_cite_files_in_the_repository():
    """A docstring citing ``something/docs/x.md`` names a file the repository has."""
    for path in sorted((ROOT / "sisock_core").rglob("*.py")) + sorted((ROOT / "sisock_plugins").rglob("*.py")):
        for cited in re.findall(r"[\w./-]*docs/[\w.-]+\.md", path.read_text()):
            assert (ROOT / cited).exists(), f"{path.relative_to(ROOT)} cites {cited}, not in the repository"
