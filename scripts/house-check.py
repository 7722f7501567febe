#!/usr/bin/env python3
"""The house's structure checks, for every crate under crates/ and for benches/.

1. No import circle between the files of one crate (strongly connected components of the file
   graph built from `use` items and `crate::`/`super::`/`self::`/child-module paths in code).
2. No file importing an error type (a `...Error` name) that is defined in its crate's top file
   or in a module above it: error types live in leaf `error.rs` files.
3. No file over 400 lines of code and no function over 120 lines of code (blank lines and
   comments do not count, nor `#[cfg(test)]` items).

`mod` declarations build the module tree that paths are resolved in; they are not edges
themselves (every parent declares its children, so counting them would make any child that
names its parent's items a "circle"). A path is followed through `use` items, public or not, to
the file that defines its last name, so `use crate::Summary` depends on metrics.rs when lib.rs
re-exports it from there.

`#[cfg(test)]` items and tests/ directories are left out: a unit test module's `use super::*`
is how Rust tests are written, not a dependency of the shipped code, and integration tests reach
the crate only through its public name.

Prints one line per violation ("path: what") and exits 1 if there is any.
Usage: scripts/house-check.py [REPO_ROOT]
"""

import re
import sys
from pathlib import Path

MAX_FILE_CODE_LINES = 400
MAX_FN_CODE_LINES = 120
ERROR_NAME = re.compile(r"^[A-Z]\w*Error$")
IDENT = r"[A-Za-z_]\w*"


def blank_comments_and_strings(text):
    """Comments become spaces and string/char literal contents become `_`, newlines kept, so
    offsets and line numbers stay those of the source and no literal text looks like code."""
    out = list(text)
    i, n = 0, len(text)

    def blank(start, end, fill):
        for k in range(start, end):
            if out[k] != "\n":
                out[k] = fill

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end, " ")
            i = end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j, " ")
            i = j
        elif m := re.compile(r'b?r(#*)"').match(text, i):
            if i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
                i += 1
                continue
            close = '"' + m.group(1)
            end = text.find(close, m.end())
            end = n if end < 0 else end
            blank(m.end(), end, "_")
            i = end + len(close)
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i + 1, j, "_")
            i = j + 1
        elif c == "'":
            m = re.compile(r"'(\\(x..|u\{[0-9a-fA-F]*\}|.)|[^\\'])'", re.S).match(text, i)
            if m:
                blank(i + 1, m.end() - 1, "_")
                i = m.end()
            else:
                i += 1  # a lifetime or a label
        else:
            i += 1
    return "".join(out)


def matching_brace(code, open_at):
    depth = 0
    for k in range(open_at, len(code)):
        if code[k] == "{":
            depth += 1
        elif code[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(code) - 1


def item_end(code, start):
    """End offset of the item starting at `start`: its `;` or the `}` closing its first `{`."""
    k = start
    depth = 0  # parentheses/brackets, so a `;` inside `[u8; 4]` does not end the item
    while k < len(code):
        ch = code[k]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == ";" and depth == 0:
            return k + 1
        elif ch == "{":
            return matching_brace(code, k) + 1
        k += 1
    return len(code)


CFG_TEST = re.compile(r"#\[cfg\(test\)\]")
ATTRIBUTE = re.compile(r"\s*#\[")
TEST_MOD_DECL = re.compile(rf"(?:pub(?:\([^)]*\))?\s+)?mod\s+({IDENT})\s*;")


def strip_test_items(code):
    """Blanks every `#[cfg(test)]` item; returns the code and the names of `mod x;` test files."""
    out = list(code)
    test_mods = set()
    for m in reversed(list(CFG_TEST.finditer(code))):
        k = m.end()
        while a := ATTRIBUTE.match(code, k):  # further attributes on the same item
            k = code.index("]", a.end()) + 1
            depth = code.count("[", a.end(), k) - code.count("]", a.end(), k - 1)
            while depth > 0:
                k2 = code.index("]", k)
                depth += code.count("[", k, k2) - 1
                k = k2 + 1
        end = item_end(code, k)
        if d := TEST_MOD_DECL.match(code[k:end].strip()):
            test_mods.add(d.group(1))
        for j in range(m.start(), end):
            if out[j] != "\n":
                out[j] = " "
    return "".join(out), test_mods


def line_of(code, offset):
    return code.count("\n", 0, offset) + 1


def code_lines(code, start=0, end=None):
    return sum(1 for line in code[start:end].split("\n") if line.strip())


class Module:
    def __init__(self, path, file, children=None):
        self.path = path  # tuple of names from the crate root
        self.file = file
        self.children = {} if children is None else children  # name -> Module
        self.imports = {}  # name -> (absolute module path of the use, segments)
        self.globs = []  # (absolute module path of the use, segments)
        self.defined = set()
        self.parent = None


MOD_DECL = re.compile(rf"\b(?:pub(?:\([^)]*\))?\s+)?mod\s+({IDENT})\s*([;{{])")
DEFINITION = re.compile(
    rf"\b(?:struct|enum|union|trait|type|fn|const|static|macro_rules!)\s+({IDENT})"
)
USE = re.compile(r"\buse\s+([^;]+);")
CODE_PATH = re.compile(rf"(?<![\w:])({IDENT}(?:\s*::\s*{IDENT})+)")


def expand_use_tree(tree):
    """`a::{b, c::{d as e, self}, *}` -> [(["a","b"], "b"), (["a","c","d"], "e"), ...]."""
    tree = re.sub(r"\s+", " ", tree.strip()).lstrip(":").strip()
    results = []

    def walk(prefix, text):
        text = text.strip()
        if not text:
            return
        brace = text.find("{")
        if brace >= 0 and text.endswith("}"):
            head = [s.strip() for s in text[:brace].split("::") if s.strip()]
            inner, parts, depth, last = text[brace + 1 : -1], [], 0, 0
            for k, ch in enumerate(inner):
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                elif ch == "," and depth == 0:
                    parts.append(inner[last:k])
                    last = k + 1
            parts.append(inner[last:])
            for part in parts:
                walk(prefix + head, part)
            return
        alias = None
        if " as " in text:
            text, alias = (s.strip() for s in text.split(" as ", 1))
        segs = prefix + [s.strip() for s in text.split("::") if s.strip()]
        if segs and segs[-1] == "self":
            segs = segs[:-1]
        if segs:
            results.append((segs, alias or segs[-1]))

    walk([], tree)
    return results


class Crate:
    """One crate root (lib.rs, main.rs, a bench) and the files its `mod` tree reaches."""

    def __init__(self, root_file, repo):
        self.repo = repo
        self.files = {}  # Path -> blanked code without test items
        self.file_module = {}  # Path -> the Module the file is
        self.uses = []  # (file, module, segments, offset)
        self.root = self.load(root_file, (), None)

    def load(self, file, path, parent):
        code = blank_comments_and_strings(file.read_text())
        code, test_mods = strip_test_items(code)
        self.files[file] = code
        module = Module(path, file)
        module.parent = parent
        self.file_module[file] = module
        self.scan(file, code, 0, len(code), module, test_mods)
        return module

    def child_file(self, module, name):
        file = module.file
        base = file.parent if file.name in ("lib.rs", "main.rs", "mod.rs") else file.with_suffix("")
        if not module.path and file.parent.name == "benches":
            base = file.parent  # a bench target's root is not in a folder of its own
        for candidate in (base / f"{name}.rs", base / name / "mod.rs"):
            if candidate.exists():
                return candidate
        return None

    def scan(self, file, code, start, end, module, test_mods):
        k = start
        inline = []
        while (m := MOD_DECL.search(code, k, end)) is not None:
            name = m.group(1)
            if m.group(2) == ";":
                if name not in test_mods:
                    child = self.child_file(module, name)
                    if child is not None:
                        sub = self.load(child, module.path + (name,), module)
                        module.children[name] = sub
                k = m.end()
            else:
                close = matching_brace(code, m.end() - 1)
                sub = Module(module.path + (name,), file)
                sub.parent = module
                module.children[name] = sub
                self.scan(file, code, m.end(), close, sub, set())
                inline.append((m.start(), close + 1))
                k = close + 1
        own = list(code[start:end])
        for a, b in inline:
            for j in range(a - start, b - start):
                own[j] = " " if own[j] != "\n" else "\n"
        own_code = "".join(own)
        module.defined |= set(DEFINITION.findall(own_code))
        for u in USE.finditer(own_code):
            for segs, alias in expand_use_tree(u.group(1)):
                if segs[-1] == "*":
                    module.globs.append((module.path, segs[:-1]))
                else:
                    module.imports[alias] = (module.path, segs)
                self.uses.append((file, module, segs, start + u.start()))
        for p in CODE_PATH.finditer(own_code):
            if re.compile(r"\buse\s*$").search(own_code[: p.start()][-40:]):
                continue
            segs = [s.strip() for s in p.group(1).split("::")]
            self.uses.append((file, module, segs, start + p.start()))

    def module_at(self, path):
        module = self.root
        for name in path:
            module = module.children.get(name)
            if module is None:
                return None
        return module

    def start_module(self, module, first, depth):
        """The module a path's first segment names, seen from `module`, or None (external)."""
        if first == "crate":
            return self.root
        if first == "self":
            return module
        if first == "super":
            return module.parent
        if first in module.children:
            return module.children[first]
        if first in module.imports:
            target = self.resolve(*module.imports[first], depth=depth + 1)
            if target and target[1] is None:
                return target[0]
        return None

    def resolve(self, from_path, segs, depth=0):
        """(module, item name or None) that `segs` names, seen from module `from_path`."""
        if depth > 20:
            return None
        module = self.module_at(from_path)
        if module is None:
            return None
        current = self.start_module(module, segs[0], depth)
        if current is None:
            return None
        rest = segs[1:]
        while rest and rest[0] == "super" and current.parent is not None:
            current, rest = current.parent, rest[1:]
        for k, name in enumerate(rest):
            if name in current.children:
                current = current.children[name]
                continue
            if name in current.defined or k < len(rest) - 1 and name not in current.imports:
                return current, name  # an item, or a path into an item (an enum's variant)
            if name in current.imports:
                found = self.resolve(*current.imports[name], depth=depth + 1)
                if found is None:
                    return current, name
                if found[1] is None:
                    current = found[0]
                    continue
                return found
            for glob_from, glob_segs in current.globs:
                found = self.resolve(glob_from, glob_segs + [name], depth=depth + 1)
                if found and found[1] is not None and name in found[0].defined:
                    return found
            return current, name
        return current, None


def is_ancestor(maybe_parent, path):
    return len(maybe_parent) < len(path) and path[: len(maybe_parent)] == maybe_parent


def strongly_connected(nodes, edges):
    """Tarjan's algorithm, iteratively; returns the components with more than one node."""
    index, low, on_stack, stack, order, components = {}, {}, set(), [], [0], []
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = order[0]
        order[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = order[0]
                    order[0] += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(edges.get(succ, ())))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def a_cycle(component, edges):
    """One concrete cycle through the component's first file, for the message."""
    members, start = set(component), component[0]
    previous, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for node in frontier:
            for succ in sorted(edges.get(node, ())):
                if succ == start:
                    path = [node]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return list(reversed(path)) + [start]
                if succ in members and succ not in previous:
                    previous[succ] = node
                    nxt.append(succ)
        frontier = nxt
    return component


def import_violations(crate, rel):
    edges, errors = {}, set()
    for file, module, segs, offset in crate.uses:
        found = crate.resolve(module.path, segs)
        if found is None:
            continue
        target_module, item = found
        if target_module.file != file:
            edges.setdefault(file, set()).add(target_module.file)
        owner = crate.file_module[file].path
        if (
            item is not None
            and ERROR_NAME.match(item)
            and target_module.file != file
            and is_ancestor(crate.file_module[target_module.file].path, owner)
        ):
            line = line_of(crate.files[file], offset)
            errors.add(
                f"{rel(file)}:{line}: imports error type {item} from {rel(target_module.file)},"
                " a module above it (error types belong in a leaf error.rs)"
            )
    out = sorted(errors)
    for component in strongly_connected(sorted(crate.files), edges):
        cycle = " -> ".join(rel(f) for f in a_cycle(component, edges))
        members = ", ".join(rel(f) for f in component)
        out.append(f"{rel(component[0])}: import circle among {members} (one: {cycle})")
    return out


FN_ITEM = re.compile(rf"\bfn\s+({IDENT})")


def size_violations(file, code, rel):
    out = []
    total = code_lines(code)
    if total > MAX_FILE_CODE_LINES:
        out.append(f"{rel(file)}: {total} lines of code (at most {MAX_FILE_CODE_LINES})")
    for m in FN_ITEM.finditer(code):
        k = m.end()
        while k < len(code) and code[k] not in "{;":
            k += 1
        if k >= len(code) or code[k] == ";":
            continue  # a declaration without a body
        lines = code_lines(code, code.rfind("\n", 0, m.start()) + 1, matching_brace(code, k) + 1)
        if lines > MAX_FN_CODE_LINES:
            out.append(
                f"{rel(file)}:{line_of(code, m.start())}: fn {m.group(1)} has {lines} lines"
                f" of code (at most {MAX_FN_CODE_LINES})"
            )
    return out


def crate_roots(repo):
    for manifest in sorted([*repo.glob("crates/*/Cargo.toml"), repo / "benches" / "Cargo.toml"]):
        src = manifest.parent / "src"
        for name in ("lib.rs", "main.rs"):
            if (src / name).exists():
                yield src / name
        yield from sorted((src / "bin").glob("*.rs"))
        yield from sorted((manifest.parent / "benches").glob("*.rs"))


def check(repo):
    repo = Path(repo).resolve()

    def rel(path):
        return str(path.relative_to(repo))

    violations, sized = [], set()
    for root in crate_roots(repo):
        crate = Crate(root, repo)
        violations += import_violations(crate, rel)
        for file, code in sorted(crate.files.items()):
            if file not in sized:
                sized.add(file)
                violations += size_violations(file, code, rel)
    return violations


def main(argv):
    repo = argv[1] if len(argv) > 1 else Path(__file__).resolve().parent.parent
    violations = check(repo)
    for line in violations:
        print(line)
    if violations:
        print(f"house-check: {len(violations)} violation(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
