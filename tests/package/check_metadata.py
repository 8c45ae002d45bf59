#!/usr/bin/env python3
"""Checks that the package metadata agree with the build (ctest: "package: Conan, vcpkg and
CMake metadata agree"). Neither Conan nor vcpkg runs here, so this is what keeps their files
honest:

- every option() of CMakeLists.txt is decided for packagers: a Conan option that the recipe's
  generate() passes on, or a fixed value that conanfile.py and the vcpkg port both set;
- the dependencies of cmake/CivicbusDependencies.cmake, cmake/civicbusConfig.cmake.in,
  conanfile.py (requirements and package_info), vcpkg.json and ports/civicbus/vcpkg.json are
  the same set, through the name table below;
- the version of project(VERSION) is the one of the generated version.hpp, vcpkg.json, the
  port, conanfile.py (read from CMakeLists.txt by set_version) and CHANGELOG.md.

Prints one line per problem and exits 1 when there is any."""
import argparse
import ast
import json
import os
import re
import sys

# One row per dependency: the name CMake's find_package uses, Conan Center's, vcpkg's.
DEPENDENCIES = [
    ("Asio", "asio", "asio"),
    ("MbedTLS", "mbedtls", "mbedtls"),
    ("fmt", "fmt", "fmt"),
    ("simdjson", "simdjson", "simdjson"),
    ("SQLite3", "sqlite3", "sqlite3"),
    ("yaml-cpp", "yaml-cpp", "yaml-cpp"),
    ("EXPAT", "expat", "expat"),
    ("PahoMqttCpp", "paho-mqtt-cpp", "paho-mqttcpp3"),
    ("PostgreSQL", "libpq", "libpq"),
    ("ZLIB", "zlib", "zlib"),
    ("Libssh2", "libssh2", "libssh2"),
    ("llhttp", "llhttp", "llhttp"),
]
# find_package names that are CMake's own, not packages.
CMAKE_BUILTIN = {"Threads", "PkgConfig"}
# vcpkg's build helpers, which a port (not the project) depends on.
VCPKG_HOST_TOOLS = {"vcpkg-cmake", "vcpkg-cmake-config"}

# Every CMake option: the Conan option it is (the vcpkg port derives CIVICBUS_SHARED from the
# triplet's linkage), or the value both recipes fix it to.
CMAKE_OPTIONS = {
    "CIVICBUS_SHARED": {"conan": "shared", "vcpkg": "${CIVICBUS_SHARED}"},
    "CIVICBUS_BUILD_TESTS": {"fixed": False},
    "CIVICBUS_BUILD_BENCHMARKS": {"fixed": False},
    "CIVICBUS_BUILD_EXAMPLES": {"fixed": False},
    "CIVICBUS_BUILD_FUZZERS": {"fixed": False},
    # The Python module is packaged as a wheel (bindings/python), not by Conan or vcpkg.
    "CIVICBUS_BUILD_PYTHON": {"fixed": False},
}
# Cache strings that are options too.
CMAKE_CACHE_STRINGS = {"CIVICBUS_SANITIZE": ""}
# Conan options with no CIVICBUS_* behind them (CMakeToolchain maps fPIC itself).
CONAN_ONLY_OPTIONS = {"fPIC"}

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def strip_cmake_comments(text):
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def cmake_facts(src):
    text = strip_cmake_comments(read(os.path.join(src, "CMakeLists.txt")))
    m = re.search(r"project\(\s*civicbus\s+VERSION\s+([0-9]+\.[0-9]+\.[0-9]+)", text)
    if not m:
        problem("CMakeLists.txt", "no project(civicbus VERSION x.y.z)")
        return None, set(), set()
    options = set(re.findall(r"^\s*option\(\s*(CIVICBUS_\w+)", text, re.M))
    strings = set(re.findall(r"^\s*set\(\s*(CIVICBUS_\w+)\s+\"[^\"]*\"\s+CACHE\s+STRING", text, re.M))
    return m.group(1), options, strings


def cmake_find_packages(path):
    text = strip_cmake_comments(read(path))
    return set(re.findall(r"\bfind_package\(\s*([A-Za-z0-9_-]+)", text))


def config_find_dependencies(path):
    text = strip_cmake_comments(read(path))
    return set(re.findall(r"\bfind_dependency\(\s*([A-Za-z0-9_-]+)", text))


class ConanRecipe:
    """What the checks need from conanfile.py, read with ast (Conan is not installed)."""

    def __init__(self, path):
        self.tree = ast.parse(read(path), path)
        self.cls = next(n for n in self.tree.body if isinstance(n, ast.ClassDef))
        self.attrs = {}
        self.methods = {}
        for node in self.cls.body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                self.attrs[node.targets[0].id] = node.value
            elif isinstance(node, ast.FunctionDef):
                self.methods[node.name] = node

    def literal(self, name):
        node = self.attrs.get(name)
        return ast.literal_eval(node) if node is not None else None

    def requires(self):
        names = set()
        for node in ast.walk(self.methods.get("requirements", ast.Module(body=[]))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "requires" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                names.add(node.args[0].value.split("/")[0])
        return names

    def cache_variables(self):
        """generate(): tc.cache_variables["X"] = <expression text>."""
        out = {}
        for node in ast.walk(self.methods.get("generate", ast.Module(body=[]))):
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript):
                sub = node.targets[0]
                if (isinstance(sub.value, ast.Attribute) and sub.value.attr == "cache_variables"
                        and isinstance(sub.slice, ast.Constant)):
                    out[sub.slice.value] = node.value
        return out

    def package_info_requires(self):
        for node in ast.walk(self.methods.get("package_info", ast.Module(body=[]))):
            if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute)
                    and node.targets[0].attr == "requires"):
                return {r.split("::")[0] for r in ast.literal_eval(node.value)}
        return set()


def check_versions(src, version, version_header):
    header = read(version_header)
    parts = dict(re.findall(r"#define CIVICBUS_VERSION_(MAJOR|MINOR|PATCH) (\d+)", header))
    string = re.search(r'#define CIVICBUS_VERSION_STRING "([^"]*)"', header)
    from_parts = ".".join(parts.get(k, "?") for k in ("MAJOR", "MINOR", "PATCH"))
    if from_parts != version:
        problem(version_header, f"CIVICBUS_VERSION_MAJOR/MINOR/PATCH say {from_parts}, "
                                f"project(VERSION) says {version}")
    if not string or string.group(1) != version:
        problem(version_header, f"CIVICBUS_VERSION_STRING is not \"{version}\"")
    for rel in ("vcpkg.json", "ports/civicbus/vcpkg.json"):
        manifest = json.loads(read(os.path.join(src, rel)))
        got = next((manifest[k] for k in ("version-semver", "version", "version-string")
                    if k in manifest), None)
        if got != version:
            problem(rel, f"version {got!r}, project(VERSION) says {version}")
        if manifest.get("name") != "civicbus":
            problem(rel, f"name {manifest.get('name')!r}, expected 'civicbus'")
    changelog = read(os.path.join(src, "CHANGELOG.md"))
    if not re.search(r"^## \[" + re.escape(version) + r"\]", changelog, re.M):
        problem("CHANGELOG.md", f"no '## [{version}]' section for the project's version")


def check_conan(src, version, cmake_options, cmake_strings, cmake_deps):
    recipe = ConanRecipe(os.path.join(src, "conanfile.py"))
    if recipe.literal("name") != "civicbus":
        problem("conanfile.py", f"name {recipe.literal('name')!r}, expected 'civicbus'")
    fixed_version = recipe.literal("version")
    if fixed_version is not None and fixed_version != version:
        problem("conanfile.py", f"version {fixed_version!r}, project(VERSION) says {version}")
    if fixed_version is None:
        body = ast.unparse(recipe.methods["set_version"]) if "set_version" in recipe.methods else ""
        if "CMakeLists.txt" not in body or "project(civicbus VERSION" not in body.replace("\\", ""):
            problem("conanfile.py", "neither a version nor a set_version() that reads "
                                    "project(civicbus VERSION) from CMakeLists.txt")
    options = recipe.literal("options") or {}
    defaults = recipe.literal("default_options") or {}
    cache = recipe.cache_variables()
    for opt, how in CMAKE_OPTIONS.items():
        if opt not in cmake_options:
            problem("tests/package/check_metadata.py", f"{opt} is in the option table but not an "
                                                       "option() of CMakeLists.txt")
            continue
        if opt not in cache:
            problem("conanfile.py", f"generate() does not set {opt}")
            continue
        expr = ast.unparse(cache[opt])
        if "conan" in how:
            if how["conan"] not in options:
                problem("conanfile.py", f"no option '{how['conan']}' (for {opt})")
            if how["conan"] not in defaults:
                problem("conanfile.py", f"no default for option '{how['conan']}'")
            if f"self.options.{how['conan']}" not in expr:
                problem("conanfile.py", f"{opt} is set from {expr}, not from the "
                                        f"'{how['conan']}' option")
        else:
            try:
                value = ast.literal_eval(cache[opt])
            except ValueError:
                value = expr
            if value != how["fixed"]:
                problem("conanfile.py", f"{opt} = {expr}, expected {how['fixed']}")
    for name, value in CMAKE_CACHE_STRINGS.items():
        if name not in cmake_strings:
            problem("tests/package/check_metadata.py", f"{name} is not a cache string of CMakeLists.txt")
        elif name not in cache or ast.literal_eval(cache[name]) != value:
            problem("conanfile.py", f"generate() should set {name} to {value!r}")
    mapped = {how["conan"] for how in CMAKE_OPTIONS.values() if "conan" in how}
    for opt in options:
        if opt not in mapped and opt not in CONAN_ONLY_OPTIONS:
            problem("conanfile.py", f"option '{opt}' maps to no CMake option (add it to the table "
                                    "in tests/package/check_metadata.py)")
    expected = {conan for cmake, conan, _ in DEPENDENCIES if cmake in cmake_deps}
    for where, got in (("requirements()", recipe.requires()),
                       ("package_info() requires", recipe.package_info_requires())):
        for name in sorted(expected - got):
            problem("conanfile.py", f"{where} lacks {name}")
        for name in sorted(got - expected):
            problem("conanfile.py", f"{where} has {name}, which CMake does not find")
    for rel in ("test_package/conanfile.py", "test_package/CMakeLists.txt",
                "test_package/test_package.cpp"):
        if not os.path.exists(os.path.join(src, rel)):
            problem(rel, "missing (Conan 2 test package)")


def check_vcpkg(src, cmake_options, cmake_deps):
    expected = {vcpkg for cmake, _, vcpkg in DEPENDENCIES if cmake in cmake_deps}
    for rel, tools in (("vcpkg.json", set()), ("ports/civicbus/vcpkg.json", VCPKG_HOST_TOOLS)):
        manifest = json.loads(read(os.path.join(src, rel)))
        got = set()
        for dep in manifest.get("dependencies", []):
            got.add(dep if isinstance(dep, str) else dep["name"])
        for name in sorted(expected - got):
            problem(rel, f"dependencies lack {name}")
        for name in sorted(got - expected - tools):
            problem(rel, f"dependencies have {name}, which CMake does not find")
        for name in sorted(tools - got):
            problem(rel, f"dependencies lack the host tool {name}")
    portfile = strip_cmake_comments(read(os.path.join(src, "ports/civicbus/portfile.cmake")))
    for opt, how in CMAKE_OPTIONS.items():
        want = how.get("vcpkg", "OFF" if how.get("fixed") is False else "ON")
        if f"-D{opt}={want}" not in portfile:
            problem("ports/civicbus/portfile.cmake", f"does not pass -D{opt}={want}")
    for name in CMAKE_CACHE_STRINGS:
        if f"-D{name}=" not in portfile:
            problem("ports/civicbus/portfile.cmake", f"does not set {name}")
    for call in ("vcpkg_cmake_configure", "vcpkg_cmake_install", "vcpkg_cmake_config_fixup",
                 "vcpkg_install_copyright"):
        if call + "(" not in portfile:
            problem("ports/civicbus/portfile.cmake", f"no {call}()")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--version-header", required=True, help="the generated civicbus/version.hpp")
    args = parser.parse_args()
    src = args.source_dir

    version, cmake_options, cmake_strings = cmake_facts(src)
    if version is None:
        print("\n".join(problems))
        return 1
    for opt in sorted(cmake_options - set(CMAKE_OPTIONS)):
        problem("CMakeLists.txt", f"option {opt} is not in the option table of "
                                  "tests/package/check_metadata.py: decide what Conan and vcpkg do with it")
    for name in sorted(cmake_strings - set(CMAKE_CACHE_STRINGS)):
        problem("CMakeLists.txt", f"cache string {name} is not in tests/package/check_metadata.py")

    known = {cmake for cmake, _, _ in DEPENDENCIES}
    deps_file = os.path.join(src, "cmake", "CivicbusDependencies.cmake")
    cmake_deps = cmake_find_packages(deps_file) - CMAKE_BUILTIN
    for name in sorted(cmake_deps - known):
        problem("cmake/CivicbusDependencies.cmake", f"finds {name}, which has no row in the "
                                                    "name table of tests/package/check_metadata.py")
    for name in sorted(known - cmake_deps):
        problem("tests/package/check_metadata.py", f"the name table has {name}, which "
                                                   "cmake/CivicbusDependencies.cmake does not find")
    config_deps = config_find_dependencies(os.path.join(src, "cmake", "civicbusConfig.cmake.in"))
    config_deps -= CMAKE_BUILTIN
    for name in sorted(cmake_deps - config_deps):
        problem("cmake/civicbusConfig.cmake.in", f"does not find_dependency({name}), which the "
                                                 "build links")
    for name in sorted(config_deps - cmake_deps):
        problem("cmake/civicbusConfig.cmake.in", f"finds {name}, which the build does not use")

    check_versions(src, version, args.version_header)
    check_conan(src, version, cmake_options, cmake_strings, cmake_deps)
    check_vcpkg(src, cmake_options, cmake_deps)

    checked = (f"version {version}; {len(cmake_options)} CMake options; "
               f"{len(cmake_deps)} dependencies across CMake, the CMake config, Conan and vcpkg")
    if problems:
        print("\n".join(problems))
        print(f"{len(problems)} problem(s) ({checked})")
        return 1
    print(f"metadata agree: {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
