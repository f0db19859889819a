#!/usr/bin/env python3
"""Fails when two source files of one crate use each other.

ARCHITECTURE.md: "No two files import each other." A file uses another when
it names a path into it: `crate::a::b` (in a `use` or inline), `super::x`,
`self::x`, grouped or not. A parent module that only declares its children
(`mod x;`) does not use them. Test modules count: a `#[cfg(test)] mod tests`
inside a.rs that uses b.rs makes a.rs use b.rs.

Usage: .ci/no-circles.py [CRATE_SRC_DIR...]   (default: every crate here)
Exits 1 naming each pair, 0 when there is none.
"""

import os
import re
import sys

ROOTS = ["src", "agent/src", "coordinator/src"]


def crate_roots():
    roots = list(ROOTS)
    if os.path.isdir("crates"):
        for name in sorted(os.listdir("crates")):
            if os.path.isdir(os.path.join("crates", name, "src")):
                roots.append(os.path.join("crates", name, "src"))
    return roots


def module_files(root):
    """Maps module paths (tuples) to files, for every .rs file under root."""
    mods = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            mods[tuple(parts)] = os.path.join(root, rel)
    return mods


def strip_comments_and_strings(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def expand_groups(path):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (flat enough here)."""
    m = re.match(r"^([\w:]*?)\{(.*)\}$", path, re.S)
    if not m:
        return [path]
    prefix, inner = m.group(1), m.group(2)
    out, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    result = []
    for item in out:
        for sub in expand_groups(item):
            result.append(prefix + sub)
    return result


PATH = re.compile(r"\b(crate|super|self)((?:::\{[^;]*?\}|::\w+)+)")


def used_modules(file_mod, text, mods):
    """Module paths that `text` (the file of module `file_mod`) names."""
    used = set()
    for m in PATH.finditer(text):
        head, rest = m.group(1), m.group(2)
        for path in expand_groups(rest.lstrip(":")):
            parts = [p for p in path.replace(" ", "").split("::") if p]
            if head == "crate":
                base = []
            elif head == "super":
                base = list(file_mod[:-1])
            else:
                base = list(file_mod)
            while parts and parts[0] == "super":
                base = base[:-1]
                parts = parts[1:]
            full = base + parts
            # The longest prefix that is a module file.
            for n in range(len(full), -1, -1):
                if tuple(full[:n]) in mods:
                    used.add(tuple(full[:n]))
                    break
    return used


def check(root):
    mods = module_files(root)
    uses = {}
    for mod, path in mods.items():
        text = strip_comments_and_strings(open(path, encoding="utf-8").read())
        uses[mod] = {u for u in used_modules(mod, text, mods) if u != mod}
    pairs = []
    for a, targets in uses.items():
        for b in targets:
            if a < b and a in uses.get(b, set()):
                # A parent that only declares and re-exports a child is a
                # table of contents, not a user: `mod.rs` naming its own
                # child through `self::` or `pub use` is allowed.
                if a == b[: len(a)] or b == a[: len(b)]:
                    parent, child = (a, b) if len(a) < len(b) else (b, a)
                    if not child_used_beyond_reexport(mods[parent], child[len(parent)]):
                        continue
                pairs.append((mods[a], mods[b]))
    return pairs


def child_used_beyond_reexport(parent_file, child):
    """Whether a parent module uses its child other than by `mod`/`pub use`."""
    text = strip_comments_and_strings(open(parent_file, encoding="utf-8").read())
    for line in text.splitlines():
        s = line.strip()
        if re.match(r"^(pub(\([\w:]+\))?\s+)?(mod|use)\s", s):
            continue
        if re.search(r"\b" + re.escape(child) + r"::", s):
            return True
    return False


def main():
    roots = sys.argv[1:] or crate_roots()
    bad = []
    for root in roots:
        if os.path.isdir(root):
            bad.extend(check(root))
    for a, b in sorted(bad):
        print(f"error: {a} and {b} use each other")
    if bad:
        print("(move what both need into a third file that neither imports back)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
