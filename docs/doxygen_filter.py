#!/usr/bin/python3
"""Doxygen INPUT_FILTER for civicbus headers, which comment with plain `//` (STYLE.md).

Doxygen reads only `///` and `/** */` as documentation, so this turns the headers' comments
into doc comments on the fly (the files are not changed): the comment at the top of a header
becomes its @file text, a comment on lines of its own documents what follows, and a comment
after a declaration on the same line documents that declaration (`///<`). Section rulers
(`// ---- ... ----`) stay plain comments. Reads the file named by argv[1], writes to stdout.
"""
import re
import sys

RULER = re.compile(r"^\s*// -{2,}")
OWN_LINE = re.compile(r"^(\s*)//(?!/)\s?(.*)$")
TRAILING = re.compile(r"^(.*?[;,{}]\s*)//(?!/)\s?(.*)$")


def escape(text):
    """Escapes what Doxygen would take for commands or HTML tags, outside `code spans`."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"([@<>\\])", r"\\\1", parts[i])
    return "`".join(parts)


def main():
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    out = []
    i = 0
    # The header comment, up to #pragma once: the file's description.
    if lines and lines[0].startswith("//"):
        out.append("/// @file")
        while i < len(lines) and lines[i].startswith("//"):
            out.append("/// " + escape(lines[i][2:].lstrip()))
            i += 1
    for line in lines[i:]:
        if RULER.match(line):
            out.append(line)
            continue
        m = OWN_LINE.match(line)
        if m:
            out.append(f"{m.group(1)}/// {escape(m.group(2))}")
            continue
        m = TRAILING.match(line)
        if m and '"' not in m.group(1).split("//")[0][-1:]:
            out.append(f"{m.group(1)}///< {escape(m.group(2))}")
            continue
        out.append(line)
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
