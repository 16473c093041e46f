"""Write the peers' argument surfaces (dataclass field names) under tests/compat/surfaces/, read with `ast`.

The peer packages are never imported: their released sources are downloaded with `pip download --no-deps` (or read
from a git checkout) and their dataclass fields parsed. One file per surface: a header line
`# package version (or repo@commit), how extracted`, then `name<TAB>class or file<TAB>default repr` per name.
Lines `#override<TAB>name<TAB>class<TAB>default` record where a surface changes the default of a name it inherits
from transformers' TrainingArguments (the home-system defaults the dialect layer needs).

Usage: .venv/bin/python scripts/extract_surfaces.py [--peers /tmp/tunesmith-peers] [--mindspeed GIT_DIR]
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "compat" / "surfaces"
WHEELS = {"trl": "trl==1.16.0", "llamafactory": "llamafactory==0.9.5", "swift": "ms-swift==4.6.0"}
MINDSPEED_FILE = "mindspeed_llm/fsdp2/utils/arguments.py"


@dataclass
class ClassInfo:
    name: str
    module: str  # dotted path of the file, e.g. "trl.trainer.sft_config"
    file: str
    bases: list[str]
    fields: list[tuple[str, str]]  # (name, default repr) in declaration order
    imports: dict[str, tuple[str, str]]  # local name -> (module, original name)


@dataclass
class Index:
    """Every class of a set of source files, looked up by name (ambiguities resolved through the file's imports)."""

    classes: dict[str, list[ClassInfo]] = field(default_factory=dict)

    def add_source(self, module: str, file: str, text: str) -> None:
        tree = ast.parse(text)
        imports = _imports(tree, module)
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                info = ClassInfo(
                    node.name, module, file, [_base_name(b) for b in node.bases], _fields(node), imports
                )
                self.classes.setdefault(node.name, []).append(info)

    def add_tree(self, root: Path, package: str, only: Iterable[str] = ()) -> None:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if only and not any(rel.startswith(p) for p in only):
                continue
            self.add_source(rel[:-3].replace("/", ".").removesuffix(".__init__"), rel, path.read_text())

    def resolve(self, name: str, context: ClassInfo | None = None) -> ClassInfo | None:
        module_hint = ""
        if context is not None:
            module_hint, name = context.imports.get(name, (context.module, name))
        candidates = self.classes.get(name, [])
        if len(candidates) <= 1 or context is None:
            return candidates[0] if candidates else None
        ranked = sorted(candidates, key=lambda c: -_common_prefix(c.module, module_hint))
        return ranked[0]

    def mro(self, info: ClassInfo) -> list[ClassInfo]:
        """C3 linearisation over the classes this index knows (unknown bases are skipped)."""
        bases = [b for b in (self.resolve(n, info) for n in info.bases) if b is not None]
        seqs = [self.mro(b) for b in bases] + [bases]
        out = [info]
        while any(seqs):
            seqs = [s for s in seqs if s]
            for seq in seqs:
                head = seq[0]
                if not any(head is c for s in seqs for c in s[1:]):
                    break
            else:
                raise ValueError(f"inconsistent bases for {info.name}")
            out.append(head)
            seqs = [s[1:] if s[0] is head else s for s in seqs]
        return out


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.split("."), b.split("."), strict=False):
        if x != y:
            break
        n += 1
    return n


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _base_name(node.value)
    return node.id if isinstance(node, ast.Name) else ast.unparse(node)


def _imports(tree: ast.Module, module: str) -> dict[str, tuple[str, str]]:
    out = {}
    package = module.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level] + ([base] if base else []))
            for alias in node.names:
                out[alias.asname or alias.name] = (base, alias.name)
    return out


def _fields(node: ast.ClassDef) -> list[tuple[str, str]]:
    out = []
    for stmt in node.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        if "ClassVar" in ast.unparse(stmt.annotation) or "InitVar" in ast.unparse(stmt.annotation):
            continue
        default = _default_repr(stmt.value)
        if default is not None:
            out.append((stmt.target.id, default))
    return out


def _default_repr(value: ast.expr | None) -> str | None:
    """The default as source text; None for a field the user cannot set (init=False)."""
    if value is None:
        return "MISSING"
    if not (isinstance(value, ast.Call) and _base_name(value.func) == "field"):
        return ast.unparse(value)
    kwargs = {k.arg: k.value for k in value.keywords}
    if isinstance(kwargs.get("init"), ast.Constant) and kwargs["init"].value is False:
        return None
    if "default" in kwargs:
        return ast.unparse(kwargs["default"])
    if "default_factory" in kwargs:
        factory = kwargs["default_factory"]
        body = factory.body if isinstance(factory, ast.Lambda) else ast.Call(factory, [], [])
        return ast.unparse(body)
    return "MISSING"


@dataclass
class Surface:
    file: str
    header: str
    roots: list[ClassInfo]
    exclude: list[ClassInfo] = field(default_factory=list)  # classes whose names belong to another surface
    exclude_names: frozenset[str] = frozenset()  # further names listed elsewhere (not reported as overrides)


Row = tuple[str, str, str]


def resolved_fields(index: Index, roots: list[ClassInfo]) -> dict[str, Row]:
    """name -> (name, owning class (file), default) over the roots' MROs; the most derived definition wins."""
    out: dict[str, Row] = {}
    for root in roots:
        for info in index.mro(root):
            for name, default in info.fields:
                out.setdefault(name, (name, f"{info.name} ({info.file})", default))
    return out


def collect(index: Index, surface: Surface) -> tuple[list[Row], list[Row]]:
    """(rows, overrides): the surface's own names, and excluded names it gives another default."""
    mine = resolved_fields(index, surface.roots)
    theirs = resolved_fields(index, surface.exclude)
    rows = [r for n, r in mine.items() if n not in theirs and n not in surface.exclude_names]
    overrides = [r for n, r in mine.items() if n in theirs and r[2] != theirs[n][2]]
    return rows, overrides


def write(index: Index, surface: Surface) -> list[Row]:
    rows, overrides = collect(index, surface)
    lines = [f"# {surface.header}"]
    lines += ["#override\t" + "\t".join(r) for r in overrides]
    lines += ["\t".join(r) for r in rows]
    (OUT / surface.file).write_text("\n".join(_one_line(x) for x in lines) + "\n")
    print(f"{surface.file}: {len(rows)} names ({len(overrides)} defaults changed from the excluded classes)")
    return rows


def _one_line(text: str) -> str:
    return " ".join(text.split("\n"))


def fetch_wheels(peers: Path) -> dict[str, Path]:
    """Download (once) and unpack each peer wheel; returns package -> unpacked folder."""
    peers.mkdir(parents=True, exist_ok=True)
    out = {}
    for package, spec in WHEELS.items():
        target = peers / spec.replace("==", "-")
        if not target.exists():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec, "-d", str(peers)],
                check=True,
            )
            dist = spec.split("==")[0].replace("-", "_")
            wheel = next(peers.glob(f"{dist}-{spec.split('==')[1]}-*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(target)
        out[package] = target
    return out


def git_run(git_dir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True, check=True
    ).stdout


def add_git_tree(index: Index, git_dir: Path, src: str, only: tuple[str, ...]) -> str:
    """Add the files under `src` of a git repository's HEAD whose path (below `src`) starts with `only`; returns HEAD."""
    for path in git_run(git_dir, "ls-tree", "-r", "--name-only", "HEAD", *([src] if src else [])).split():
        rel = path.removeprefix(src)
        if rel.endswith(".py") and rel.startswith(only):
            module = rel[:-3].replace("/", ".").removesuffix(".__init__")
            index.add_source(module, path, git_run(git_dir, "show", f"HEAD:{path}"))
    return git_run(git_dir, "rev-parse", "HEAD").strip()


class Finder:
    """Class lookups for the surface definitions."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def cls(self, name: str, module_hint: str) -> ClassInfo:
        found = [c for c in self.index.classes.get(name, []) if c.module.startswith(module_hint)]
        if len(found) != 1:
            raise SystemExit(f"class {name} under {module_hint}: {len(found)} matches")
        return found[0]

    def of_files(self, prefix: str, suffix: str = "_args") -> list[ClassInfo]:
        """Every class with fields in the modules under `prefix` whose name ends with `suffix`."""
        return [
            c
            for cs in self.index.classes.values()
            for c in cs
            if c.module.startswith(prefix) and c.module.endswith(suffix) and c.fields
        ]

    def hf(self) -> list[ClassInfo]:
        return [self.cls("Seq2SeqTrainingArguments", "transformers.training_args_seq2seq")]


HOW = "ast of dataclass fields (init=False fields skipped)"
TRL_CONFIGS = {"sft": "SFTConfig", "dpo": "DPOConfig", "kto": "KTOConfig", "reward": "RewardConfig"}


def release_surfaces(find: Finder, versions: dict[str, str], mindspeed_ref: str) -> list[Surface]:
    tf, trl = f"transformers {versions['transformers']}", f"trl {versions['trl']}"
    lf, swift = f"llamafactory {versions['llamafactory']}", f"ms-swift {versions['swift']}"
    beyond = "beyond transformers' TrainingArguments"
    return [
        Surface(
            "transformers_training_args.txt",
            f"{tf}, {HOW}: TrainingArguments and Seq2SeqTrainingArguments",
            find.hf(),
        ),
        *[
            Surface(
                f"trl_{key}.txt", f"{trl}, {HOW}: {name} {beyond}", [find.cls(name, "trl.trainer")], find.hf()
            )
            for key, name in TRL_CONFIGS.items()
        ],
        Surface(
            "trl_script.txt",
            f"{trl}, {HOW}: ModelConfig and ScriptArguments (the command-line options of TRL's scripts)",
            [
                find.cls("ModelConfig", "trl.trainer.model_config"),
                find.cls("ScriptArguments", "trl.scripts.utils"),
            ],
        ),
        Surface(
            "lf_v0.txt",
            f"{lf}, {HOW}: every dataclass in llamafactory/hparams/*_args.py {beyond}",
            find.of_files("llamafactory.hparams"),
            find.hf(),
        ),
        Surface(
            "lf_v1.txt",
            f"{lf}, {HOW}: every dataclass in llamafactory/v1/config/*_args.py",
            find.of_files("llamafactory.v1"),
        ),
        Surface(
            "swift.txt",
            f"{swift}, {HOW}: SftArguments (swift sft / swift pt) {beyond}",
            [find.cls("SftArguments", "swift.arguments.sft_args")],
            find.hf(),
        ),
        Surface(
            "swift_rlhf.txt",
            f"{swift}, {HOW}: RLHFArguments (swift rlhf) beyond SftArguments (swift.txt)",
            [find.cls("RLHFArguments", "swift.arguments.rlhf_args")],
            [find.cls("SftArguments", "swift.arguments.sft_args")],
        ),
        Surface(
            "mindspeed.txt",
            f"{mindspeed_ref}, {HOW}: every dataclass in {MINDSPEED_FILE} (FSDP2 backend)",
            find.of_files("mindspeed_llm", ""),
        ),
    ]


def main_branch_surfaces(find: Finder, ref: str, release: dict[str, list[Row]]) -> list[Surface]:
    """LLaMA-Factory's default branch (where the corpus comes from): only the names the release does not have."""
    since = "names added since the release (lf_v0.txt / lf_v1.txt)"
    return [
        Surface(
            "lf_v0_main.txt",
            f"{ref}, {HOW}: src/llamafactory/hparams/*_args.py, {since}",
            find.of_files("llamafactory.hparams"),
            find.hf(),
            frozenset(r[0] for r in release["lf_v0.txt"]),
        ),
        Surface(
            "lf_v1_main.txt",
            f"{ref}, {HOW}: src/llamafactory/v1/config/*_args.py, {since}",
            find.of_files("llamafactory.v1"),
            exclude_names=frozenset(r[0] for r in release["lf_v1.txt"]),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=Path, default=Path("/tmp/tunesmith-peers"))
    parser.add_argument("--mindspeed", type=Path, default=Path("/work/.mirror/Ascend+MindSpeed-LLM/repo"))
    parser.add_argument("--llamafactory", type=Path, default=Path("/work/.mirror/hiyouga+LLaMA-Factory/repo"))
    args = parser.parse_args(argv)
    import transformers  # only to find its installed sources; nothing of it runs

    tf_root = Path(transformers.__file__).parents[1]
    wheels = fetch_wheels(args.peers)
    index, main_index = Index(), Index()
    for ix in (index, main_index):
        ix.add_tree(tf_root, "transformers", only=("transformers/training_args",))
    index.add_tree(wheels["trl"], "trl", only=("trl/trainer/", "trl/scripts/utils.py"))
    index.add_tree(
        wheels["llamafactory"], "llamafactory", only=("llamafactory/hparams/", "llamafactory/v1/config/")
    )
    index.add_tree(
        wheels["swift"], "swift", only=("swift/arguments/", "swift/trainers/", "swift/rlhf_trainers/")
    )
    mindspeed = add_git_tree(index, args.mindspeed, "", (MINDSPEED_FILE,))
    lf_main = add_git_tree(
        main_index, args.llamafactory, "src/", ("llamafactory/hparams/", "llamafactory/v1/config/")
    )
    versions = {"transformers": transformers.__version__} | {k: v.split("==")[1] for k, v in WHEELS.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    release = {
        s.file: write(index, s)
        for s in release_surfaces(Finder(index), versions, f"Ascend/MindSpeed-LLM@{mindspeed}")
    }
    for surface in main_branch_surfaces(Finder(main_index), f"hiyouga/LLaMA-Factory@{lf_main}", release):
        write(main_index, surface)
    return 0


if __name__ == "__main__":
    sys.exit(main())
