#!/usr/bin/python3
"""Renders the node.yaml schema (data/node/config_schema.json) as docs/config-reference.md.

The schema is the source: it lists every section and key the loader (src/node/*config*.cpp)
accepts, and tests/node/config_schema_test.cpp keeps the two in step. This script turns it
into Markdown tables, one per section (key, type, default, description). Standard library
only.

  scripts/gen_config_reference.py           rewrite docs/config-reference.md
  scripts/gen_config_reference.py --check   exit 1 (with a diff) when the file is out of date
"""

import argparse
import difflib
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SCHEMA = os.path.join(ROOT, "data", "node", "config_schema.json")
DEFAULT_OUTPUT = os.path.join(ROOT, "docs", "config-reference.md")

# Scalar kinds explained once under "Value syntax", in this order.
VALUE_KINDS = ["text", "secret", "path", "integer", "number", "boolean", "duration",
               "duration_seconds", "duration_hours", "size", "time"]


def slug(heading):
    """The anchor GitHub gives a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_bytes(n):
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def flow(value):
    """A JSON value written the way it would be in YAML flow style."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        if value == "" or re.search(r"[:#,\[\]{}&*!|>'\"%@`]|^\s|\s$", value):
            return json.dumps(value)
        return value
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


class Renderer:
    def __init__(self, schema):
        self.schema = schema
        self.defs = schema.get("$defs", {})
        self.out = []
        self.shared = []  # object $defs referenced from tables, rendered once at the end

    # ---- schema helpers -----------------------------------------------------------------------

    def deref(self, s):
        if "$ref" in s:
            name = s["$ref"].rsplit("/", 1)[-1]
            return name, self.defs[name]
        return None, s

    @staticmethod
    def is_object(s):
        t = s.get("type")
        types = t if isinstance(t, list) else [t]
        return "object" in types and ("properties" in s or isinstance(
            s.get("additionalProperties"), dict))

    def object_of(self, s):
        """The object schema a key leads to (itself, its list items, or a map's values)."""
        name, d = self.deref(s)
        if name and "properties" in d:
            return None  # a shared block, rendered on its own
        if self.is_object(d):
            return d
        if "anyOf" in d:
            for branch in d["anyOf"]:
                if self.is_object(branch):
                    return branch
        items = d.get("items")
        if isinstance(items, dict):
            _, it = self.deref(items)
            if self.is_object(it):
                return it
        return None

    def child_path(self, path, key, s):
        """The dotted name of the subsection a key leads to."""
        _, d = self.deref(s)
        base = f"{path}.{key}" if path else key
        if self.is_object(d) or any(self.is_object(b) for b in d.get("anyOf", [])):
            return base
        return base + "[]"

    def type_of(self, s):
        name, d = self.deref(s)
        if name:
            if "properties" in d:
                title = d.get("title", name)
                if name not in self.shared:
                    self.shared.append(name)
                return f"[{title}](#{slug(title)})"
            text = d.get("title", name)
            lo, hi = s.get("minimum"), s.get("maximum")
            if lo is not None or hi is not None:
                fmt = format_bytes if name == "size" else str
                if lo is not None and hi is not None:
                    text += f", {fmt(lo)} to {fmt(hi)}"
                elif lo is not None:
                    text += f", at least {fmt(lo)}"
                else:
                    text += f", at most {fmt(hi)}"
            return text
        if "anyOf" in d:
            enums = [b for b in d["anyOf"] if "enum" in b]
            if enums and len(enums) + 1 == len(d["anyOf"]):  # a choice: enum(s) + case-folding
                return "one of " + ", ".join(f"`{v}`" for v in enums[0]["enum"])
            return " or ".join(self.type_of(b) for b in d["anyOf"])
        if "enum" in d:
            return "one of " + ", ".join(f"`{v}`" for v in d["enum"] if v is not None)
        t = d.get("type")
        types = t if isinstance(t, list) else [t]
        types = [x for x in types if x != "null"]
        parts = []
        for x in types:
            if x == "object":
                if isinstance(d.get("additionalProperties"), dict):
                    parts.append("mapping of names to mappings")
                else:
                    parts.append("mapping")
            elif x == "array":
                items = d.get("items", {})
                inner = self.type_of(items) if items else "values"
                _, it = self.deref(items) if items else (None, {})
                parts.append("list of mappings" if self.is_object(it) else f"list of {inner}")
            elif x is None:
                parts.append("any")
            else:
                parts.append(x)
        return " or ".join(parts) if parts else "any"

    # ---- output -------------------------------------------------------------------------------

    def emit(self, line=""):
        self.out.append(line)

    def table(self, path, obj):
        required = set(obj.get("required", []))
        rows = []
        nested = []
        for key, s in obj.get("properties", {}).items():
            sub = self.object_of(s)
            typ = self.type_of(s)
            key_cell = f"`{key}`"
            if sub is not None:
                child = self.child_path(path, key, s)
                key_cell = f"[`{key}`](#{slug(child)})"
                nested.append((child, sub))
            _, d = self.deref(s)
            if "default" in s:
                default = f"`{flow(s['default'])}`"
            elif key in required:
                default = "*required*"
            else:
                default = "—"
            desc = s.get("description") or d.get("description", "")
            examples = s.get("examples")
            if "default" not in s and examples and not isinstance(examples[0], dict):
                desc += f" Example: `{flow(examples[0])}`."
            rows.append(f"| {key_cell} | {cell(typ)} | {cell(default)} | {cell(desc)} |")
        self.emit("| key | type | default | description |")
        self.emit("|---|---|---|---|")
        for r in rows:
            self.emit(r)
        self.emit()
        return nested

    def section(self, path, obj, level):
        heading = f"`{path}`"
        self.emit(f"{'#' * level} {heading}")
        self.emit()
        if obj.get("description"):
            self.emit(obj["description"])
            self.emit()
        if isinstance(obj.get("additionalProperties"), dict):
            # A map of named entries (gateway.cors): the entries' keys.
            entry = obj["additionalProperties"]
            self.emit("Each entry maps a name to a mapping with these keys:")
            self.emit()
            nested = self.table(path, entry)
        else:
            nested = self.table(path, obj)
        for child, sub in nested:
            self.section(child, sub, 3)

    def render(self):
        s = self.schema
        self.emit("# `node.yaml` reference")
        self.emit()
        self.emit("<!-- Generated by scripts/gen_config_reference.py from "
                  "data/node/config_schema.json; do not edit by hand. -->")
        self.emit()
        self.emit(s.get("description", ""))
        self.emit()
        self.emit("This page lists every key; [CONFIG.md](CONFIG.md) explains how the sections "
                  "work together, with examples. Editors that read JSON Schema (for YAML, e.g. "
                  "a `# yaml-language-server: $schema=...` comment) can check a file against "
                  "`data/node/config_schema.json` as it is typed.")
        self.emit()
        self.emit("Sections: " + ", ".join(f"[`{k}`](#{slug('`' + k + '`')})"
                                             for k in s.get("properties", {})) + ".")
        self.emit()
        self.emit("## Value syntax")
        self.emit()
        self.emit("The loader reads every scalar as text and parses it as the key asks; a "
                  "*choice* (one of ...) is case-insensitive unless the table says otherwise. "
                  "Sections and optional mappings may be left empty (`logging:`), which "
                  "keeps their defaults.")
        self.emit()
        self.emit("| type | how it is written |")
        self.emit("|---|---|")
        for name in VALUE_KINDS:
            d = self.defs.get(name)
            if d:
                self.emit(f"| {cell(d.get('title', name))} | {cell(d.get('description', ''))} |")
        self.emit()
        for key, sub in s.get("properties", {}).items():
            obj = self.object_of(sub)
            self.emit(f"## `{key}`")
            self.emit()
            desc = sub.get("description", "")
            if obj is None:
                self.emit(desc)
                self.emit()
                continue
            if obj is not sub:  # a list of entries, or a mapping-or-list
                self.emit(desc + f" Type: {self.type_of(sub)}.")
                self.emit()
                if obj.get("description"):
                    self.emit(obj["description"])
                    self.emit()
            elif desc:
                self.emit(desc)
                self.emit()
            nested = self.table(self.child_path("", key, sub), obj)
            for child, grand in nested:
                self.section(child, grand, 3)
        if self.shared:
            self.emit("## Shared blocks")
            self.emit()
            done = set()
            i = 0
            while i < len(self.shared):  # rendering one may reference another
                name = self.shared[i]
                i += 1
                if name in done:
                    continue
                done.add(name)
                d = self.defs[name]
                self.emit(f"### {d.get('title', name)}")
                self.emit()
                if d.get("description"):
                    self.emit(d["description"])
                    self.emit()
                nested = self.table(d.get("title", name), d)
                for child, grand in nested:
                    self.section(child, grand, 4)
        text = "\n".join(self.out)
        text = re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"
        return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 when the output file differs from what the schema gives")
    ap.add_argument("--schema", default=DEFAULT_SCHEMA)
    ap.add_argument("--output", default=DEFAULT_OUTPUT)
    args = ap.parse_args()
    try:
        with open(args.schema, encoding="utf-8") as f:
            schema = json.load(f)
    except (OSError, ValueError) as e:
        print(f"gen_config_reference: cannot read the schema {args.schema}: {e}", file=sys.stderr)
        return 2
    text = Renderer(schema).render()
    rel = os.path.relpath(args.output, ROOT)
    if args.check:
        try:
            with open(args.output, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = ""
        if current == text:
            print(f"{rel} is up to date")
            return 0
        diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(),
                                         f"{rel} (committed)", f"{rel} (from the schema)",
                                         lineterm="", n=1))
        print("\n".join(diff[:60]))
        if len(diff) > 60:
            print(f"... ({len(diff) - 60} more diff lines)")
        print(f"{rel} is out of date with {os.path.relpath(args.schema, ROOT)}: "
              "run scripts/gen_config_reference.py and commit the result", file=sys.stderr)
        return 1
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
