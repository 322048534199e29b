"""The architecture, enforced: imports point down the layers, serving reads only schema,
no module imports itself through a cycle, and everything installs under recsys_tfx.

    cli -> kubeflow -> pipeline -> leaderboard -> components -> trainer -> schema
    serving -> schema          (recsys_tfx.env, TF-free, may be imported by anyone)

Every import statement of every module counts, including those deferred into functions.
"""
import ast
import os
import re
from typing import Dict, List, Set, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = "recsys_tfx"
LAYERS = ("cli", "kubeflow", "pipeline", "leaderboard", "components", "trainer", "schema")
ANYONE_MAY_IMPORT = {f"{ROOT}.env", ROOT}


def package_dirs() -> Dict[str, str]:
  """pyproject's package-dir mapping: package -> folder."""
  with open(os.path.join(REPO, "pyproject.toml")) as f:
    text = f.read()
  section = text.split("[tool.setuptools.package-dir]", 1)[1].split("\n[", 1)[0]
  return dict(re.findall(r'^"([\w.]+)"\s*=\s*"([\w./]+)"', section, re.M))


def listed_packages() -> Set[str]:
  with open(os.path.join(REPO, "pyproject.toml")) as f:
    text = f.read()
  block = text.split("packages = [", 1)[1].split("]", 1)[0]
  return set(re.findall(r'"([\w.]+)"', block))


def modules() -> Dict[str, str]:
  """module name -> file, for every module of the installed packages."""
  out = {}
  for package, folder in package_dirs().items():
    base = os.path.join(REPO, folder)
    for dirpath, dirnames, filenames in os.walk(base):
      dirnames[:] = [d for d in dirnames if d != "__pycache__"]
      if package == ROOT and dirpath != base:
        continue
      rel = os.path.relpath(dirpath, base)
      prefix = package if rel == "." else f"{package}.{rel.replace(os.sep, '.')}"
      for name in filenames:
        if name.endswith(".py"):
          out[prefix if name == "__init__.py" else f"{prefix}.{name[:-3]}"] = \
              os.path.join(dirpath, name)
  return out


def imports(path: str, known: Set[str]) -> List[Tuple[int, str]]:
  """(line, imported module of this project) for every import in the file."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      for alias in node.names:
        sub = f"{node.module}.{alias.name}"
        found.append((node.lineno, sub if sub in known else node.module))
  return [(line, name) for line, name in found if name == ROOT or name.startswith(ROOT + ".")]


def layer(module: str) -> str:
  """The layer a module belongs to: its sub-package, or "cli" for the root package's own
  modules (the cli/ folder)."""
  parts = module.split(".")
  if module == ROOT:
    return ROOT
  return parts[1] if f"{ROOT}.{parts[1]}" in package_dirs() else "cli"


def allowed(importer: str, imported: str) -> bool:
  if imported in ANYONE_MAY_IMPORT:
    return True
  a, b = layer(importer), layer(imported)
  if a == b:
    return True
  if b == "serving":
    return a == "cli"
  if a == "serving":
    return b == "schema"
  return a in LAYERS and b in LAYERS and LAYERS.index(a) < LAYERS.index(b)


def graph() -> Dict[str, List[Tuple[int, str]]]:
  found = modules()
  return {module: imports(path, set(found)) for module, path in found.items()}


def test_every_package_folder_is_installed_under_one_root():
  packages = {m for m, path in modules().items() if path.endswith("__init__.py")}
  listed = listed_packages()
  assert packages <= listed, packages - listed
  data_only = listed - packages  # folders of data files (schemas, serving configs)
  dirs = package_dirs()
  for package in data_only:
    parent, _, name = package.rpartition(".")
    folder = os.path.join(REPO, dirs[parent], name)
    assert os.path.isdir(folder) and not any(f.endswith(".py") for f in os.listdir(folder))
  assert all(p == ROOT or p.startswith(ROOT + ".") for p in listed)


def test_imports_point_down_the_layers():
  wrong = [f"{module}:{line} imports {target}" for module, targets in graph().items()
           for line, target in targets if not allowed(module, target)]
  assert not wrong, "imports pointing up the layers (or into serving):\n" + "\n".join(wrong)


def test_no_import_of_the_old_top_level_names():
  old = ("trainer", "components", "pipeline", "serving", "leaderboard", "kubeflow", "schema")
  found = []
  for module, path in modules().items():
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
      found += [f"{module}:{node.lineno} {n}" for n in names if n.split(".")[0] in old]
  assert not found, found


def test_no_import_cycles():
  edges = {module: {target for _, target in targets if target != module}
           for module, targets in graph().items()}
  state: Dict[str, int] = {}  # 1: on the stack, 2: done
  stack: List[str] = []
  cycles = []

  def visit(module: str):
    state[module] = 1
    stack.append(module)
    for target in sorted(edges.get(module, ())):
      if state.get(target) == 1:
        cycles.append(stack[stack.index(target):] + [target])
      elif target in edges and not state.get(target):
        visit(target)
    stack.pop()
    state[module] = 2

  for module in sorted(edges):
    if not state.get(module):
      visit(module)
  assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_check_sees_a_wrong_arrow():
  assert not allowed("recsys_tfx.trainer.task", "recsys_tfx.pipeline.configs")
  assert not allowed("recsys_tfx.trainer.warmup", "recsys_tfx.serving.client")
  assert not allowed("recsys_tfx.serving.catalogue", "recsys_tfx.components.ingest.sources")
  assert allowed("recsys_tfx.serving.catalogue", "recsys_tfx.schema.canonical")
  assert allowed("recsys_tfx.cli", "recsys_tfx.serving.cli_commands")
  assert allowed("recsys_tfx.serving_quality", "recsys_tfx.serving.funnel")
  assert not allowed("recsys_tfx.pipeline.summary", "recsys_tfx.serving_quality")
  assert allowed("recsys_tfx.leaderboard.run", "recsys_tfx.trainer.registry")


def test_the_wheel_installs_one_top_level_package(tmp_path):
  """What `pip install` puts in site-packages: recsys_tfx and its metadata, nothing
  generic, and the curated schemas inside the package."""
  import shutil
  import subprocess
  import sys
  import zipfile
  source = tmp_path / "source"  # setuptools builds in the source tree: not in the checkout's
  shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
      ".git", ".venv", "runs", "serving_models", "build", "__pycache__", "*.egg-info"))
  out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(tmp_path / "wheel"), str(source)],
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  (wheel,) = (tmp_path / "wheel").glob("*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  top = {name.split("/")[0] for name in names}
  assert {t for t in top if not t.endswith(".dist-info")} == {ROOT}, top
  assert f"{ROOT}/schema/synthetic/schema.pbtxt" in names
  assert f"{ROOT}/trainer/models/sequential.py" in names
