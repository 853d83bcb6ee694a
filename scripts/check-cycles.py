#!/usr/bin/env python3
"""Fails when the workspace has a dependency cycle: between crates (dev-dependencies
included) or between the modules of one crate.

Usage: python3 scripts/check-cycles.py [--graph]   (--graph also prints every module edge)

Crates: the path dependencies of every workspace member, from `cargo metadata`.
Modules: every `crate::a::b`, `super::x` and `use crate::{a, b::c}` path in a crate's
files is resolved to the deepest module it names. A reference from module M to module T
counts between the two children of their closest common ancestor that hold M and T (a
module using its own parent or child is containment, not a cycle). Each folder's
children must then form a graph without cycles. Tests inside a module count: test code
is code too.
"""

import json
import os
import re
import subprocess
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def crate_cycles():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if out.returncode != 0:
        out = subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
    meta = json.loads(out.stdout)
    members = {p["name"] for p in meta["packages"]}
    graph = {}
    for p in meta["packages"]:
        deps = set()
        for d in p["dependencies"]:
            if d["name"] in members and d.get("path"):
                deps.add(d["name"])
        graph[p["name"]] = deps
    crates = [(p["name"], p["targets"]) for p in meta["packages"]]
    return graph, crates


def find_cycles(graph):
    """Strongly connected components with more than one node (or a self edge)."""
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def module_files(root_file):
    """Maps module path tuples to their files, following `mod x;` declarations."""
    modules = {}

    def walk(path, file, dir_for_children):
        modules[path] = file
        try:
            text = open(file, encoding="utf-8").read()
        except OSError:
            return
        for m in re.finditer(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", strip_comments(text), re.M):
            name = m.group(1)
            candidates = [
                os.path.join(dir_for_children, name + ".rs"),
                os.path.join(dir_for_children, name, "mod.rs"),
            ]
            attr = re.search(r'#\[path\s*=\s*"([^"]+)"\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+' + name + r"\s*;", text)
            if attr:
                candidates.insert(0, os.path.join(os.path.dirname(file), attr.group(1)))
            for c in candidates:
                if os.path.exists(c):
                    child_dir = os.path.join(dir_for_children, name)
                    walk(path + (name,), c, child_dir)
                    break

    walk((), root_file, os.path.dirname(root_file))
    return modules


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    # String literals can hold `crate::` in messages; drop their contents.
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> [[a, b], [a, c, d], [a, c, e]]."""
    tree = tree.strip()
    i = tree.find("{")
    if i >= 0:
        pre = [s for s in tree[:i].rstrip(":").strip().split("::") if s]
        inner = tree[i + 1 : tree.rindex("}")]
        parts, buf, d = [], "", 0
        for c in inner:
            if c == "," and d == 0:
                parts.append(buf)
                buf = ""
                continue
            d += c == "{"
            d -= c == "}"
            buf += c
        parts.append(buf)
        return [pre + rest for p in parts if p.strip() for rest in expand_use_tree(p)]
    seg = re.sub(r"\s+as\s+\w+$", "", tree)
    return [[s.strip() for s in seg.split("::") if s.strip()]]


def inline_mod_spans(text):
    """(start, end) offsets of every `mod name { ... }` block in stripped text."""
    spans = []
    for m in re.finditer(r"\bmod\s+\w+\s*\{", text):
        depth, i = 0, m.end() - 1
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        spans.append((m.start(), i))
    return spans


def references(text):
    """Module paths mentioned by one file, each with how many inline `mod x {}` blocks
    enclose it (a leading `super` leaves those first)."""
    text = strip_comments(text)
    spans = inline_mod_spans(text)

    def inline_depth(pos):
        return sum(1 for a, b in spans if a <= pos <= b)

    refs = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        for path in expand_use_tree(m.group(1)):
            if path and path[0] in ("crate", "super", "self"):
                refs.append((path, inline_depth(m.start())))
    for m in re.finditer(r"\b((?:crate|super)(?:\s*::\s*\w+)+)", text):
        refs.append(([s.strip() for s in m.group(1).split("::")], inline_depth(m.start())))
    return refs


def resolve(ref, here, modules, inline=0):
    """The deepest module a path starting at `here` names."""
    cur = list(here)
    i = 0
    if ref[0] == "crate":
        cur, i = [], 1
    while i < len(ref) and ref[i] in ("super", "self"):
        if ref[i] == "super":
            if inline > 0:
                inline -= 1
            else:
                cur = cur[:-1]
        i += 1
    for seg in ref[i:]:
        if tuple(cur + [seg]) in modules:
            cur.append(seg)
        else:
            break
    return tuple(cur)


def module_cycles(root_file):
    modules = module_files(root_file)
    # Inline `mod name {` blocks are part of their file's module.
    edges = defaultdict(set)  # parent -> {(child_a, child_b)}
    examples = {}
    for path, file in modules.items():
        text = open(file, encoding="utf-8").read()
        for ref, inline in references(text):
            target = resolve(ref, path, modules, inline)
            n = 0
            while n < min(len(path), len(target)) and path[n] == target[n]:
                n += 1
            if n == len(path) or n == len(target):
                continue  # ancestor or descendant
            parent = path[:n]
            a, b = path[n], target[n]
            edges[parent].add((a, b))
            examples.setdefault((parent, a, b), (file, "::".join(ref)))
    if GRAPH:
        for parent, pairs in sorted(edges.items()):
            by = defaultdict(set)
            for a, b in pairs:
                by[a].add(b)
            where = "::".join(("crate",) + parent)
            for a in sorted(by):
                print(f"  {where}::{a} -> {', '.join(sorted(by[a]))}")
    problems = []
    for parent, pairs in sorted(edges.items()):
        graph = defaultdict(set)
        for a, b in pairs:
            graph[a].add(b)
        for comp in find_cycles(graph):
            where = "::".join(("crate",) + parent)
            lines = []
            for a in comp:
                for b in comp:
                    if b in graph[a]:
                        f, r = examples[(parent, a, b)]
                        lines.append(f"    {a} -> {b}   (e.g. {os.path.relpath(f, ROOT)}: {r})")
            problems.append(f"  in {where}: {' <-> '.join(comp)}\n" + "\n".join(lines))
    return problems


GRAPH = "--graph" in sys.argv


def main():
    graph, crates = crate_cycles()
    failed = False
    cyc = find_cycles(graph)
    if cyc:
        failed = True
        print("crate cycles (dev-dependencies included):")
        for c in cyc:
            print("  " + " <-> ".join(c))
    else:
        print(f"crates: no cycle among {len(graph)} workspace crates (dev-dependencies included)")
    seen = set()
    for name, targets in crates:
        for t in targets:
            src = t["src_path"]
            if src in seen or not src.startswith(ROOT):
                continue
            if not ({"lib", "bin", "proc-macro"} & set(t["kind"]) or t["kind"] == ["test"] or t["kind"] == ["bench"]):
                continue
            seen.add(src)
            problems = module_cycles(src)
            label = f"{name} ({'/'.join(t['kind'])} {t['name']})"
            if problems:
                failed = True
                print(f"module cycles in {label}:")
                print("\n".join(problems))
            else:
                print(f"modules: no cycle in {label}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
