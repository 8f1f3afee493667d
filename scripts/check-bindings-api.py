#!/usr/bin/env python3
"""Checks generated bindings for every item emrshare-ffi exports.

The expected API is read from the Rust sources (bindings/src/*.rs): types deriving
uniffi::Record / Enum / Object / Error, foreign traits, and the functions and methods under
#[uniffi::export], with whether they are async. Each must appear in the generated Swift
(and, with --kotlin, Kotlin), async ones as `async` (Swift) / `suspend` (Kotlin) functions.
No Swift compiler runs here: this is what is checked of the Swift side on this machine.

usage: check-bindings-api.py SRC_DIR --swift FILE.swift [--kotlin FILE.kt]
Exits 1 and lists what is missing.
"""
import re
import sys
from pathlib import Path


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def exported(src_dir):
    types, functions = [], []  # functions: (owner or None, name, is_async)
    for path in sorted(Path(src_dir).glob("*.rs")):
        text = path.read_text()
        for m in re.finditer(r"#\[derive\(([^)]*)\)\]\s*(?:#\[[^\]]*\]\s*)*pub (?:struct|enum) (\w+)", text):
            if re.search(r"uniffi::(Record|Enum|Object|Error)", m.group(1)):
                types.append(m.group(2))
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            if line.startswith("#[uniffi::export"):
                j = i + 1
                while lines[j].strip().startswith("#["):
                    j += 1
                item = lines[j]
                if m := re.match(r"impl (\w+) \{", item):
                    owner, depth, k = m.group(1), 1, j + 1
                    pending_constructor = False
                    while depth > 0:
                        body = lines[k]
                        if body.strip().startswith("#[uniffi::constructor"):
                            pending_constructor = True
                        if fm := re.match(r"\s+pub (async )?fn (\w+)", body):
                            functions.append((owner, fm.group(2), bool(fm.group(1)), pending_constructor))
                            pending_constructor = False
                        depth += body.count("{") - body.count("}")
                        k += 1
                    i = k
                    continue
                if m := re.match(r"pub trait (\w+)", item):
                    types.append(m.group(1))
                    k = j + 1
                    while not lines[k].startswith("}"):
                        if fm := re.match(r"\s+fn (\w+)", lines[k]):
                            functions.append((m.group(1), fm.group(1), False, False))
                        k += 1
                    i = k
                    continue
                if m := re.match(r"pub (async )?fn (\w+)", item):
                    functions.append((None, m.group(2), bool(m.group(1)), False))
            i += 1
    return types, functions


def check(kind, text, types, functions):
    missing = []
    for t in types:
        if kind == "swift":
            pattern = rf"\b(class|struct|enum|protocol) {t}\b"
        else:
            exc = t.replace("Error", "Exception")
            pattern = rf"\b(class|interface|enum class|data class) ({t}|{exc})\b"
        if not re.search(pattern, text):
            missing.append(f"{kind}: type {t}")
    for owner, name, is_async, constructor in functions:
        fn = camel(name)
        where = f"{owner}." if owner else ""
        if kind == "swift":
            head = r"(public |open )?(static |convenience )?func" if not constructor else r"(public |open )?(static |convenience )?(func|init)"
            sig = rf"{head} {fn}\(" if not (constructor and name == "new") else r"init\("
            if is_async:
                found = re.search(sig + r"[^{]*\)\s*async\b", text)
            else:
                found = re.search(sig, text)
        else:
            prefix = r"suspend fun" if is_async else r"fun"
            found = re.search(rf"\b{prefix} `?{fn}`?\(", text)
        if not found:
            missing.append(f"{kind}: {'async ' if is_async else ''}{where}{fn}")
    return missing


def main():
    args = sys.argv[1:]
    src = args[0]
    files = dict(zip(args[1::2], args[2::2]))
    types, functions = exported(src)
    if not types or not functions:
        print("check-bindings-api: found no exported API in", src)
        return 1
    missing = []
    for flag, kind in (("--swift", "swift"), ("--kotlin", "kotlin")):
        if flag in files:
            missing += check(kind, Path(files[flag]).read_text(), types, functions)
    n_async = sum(1 for f in functions if f[2])
    print(f"check-bindings-api: {len(types)} types, {len(functions)} functions ({n_async} async) "
          f"expected in {', '.join(files.values())}")
    for m in missing:
        print("  MISSING", m)
    print(f"{(len(types) + len(functions)) * len(files) - len(missing)} found, {len(missing)} missing")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
