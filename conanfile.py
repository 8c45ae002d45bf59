# Conan 2 recipe for civicbus (docs/packaging.md). Builds this checkout:
#   conan create . --build=missing                    static library (the default)
#   conan create . -o civicbus/*:shared=True --build=missing
# test_package/ builds a small program against the package. The dependency names are Conan
# Center's; tests/package/check_metadata.py keeps them, the options and the version in step
# with CMakeLists.txt, vcpkg.json and cmake/CivicbusDependencies.cmake.
import os
import re

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load, rmdir

required_conan_version = ">=2.0"


class CivicbusConan(ConanFile):
    name = "civicbus"
    description = "Embeddable integration fabric for municipalities"
    license = "Apache-2.0"
    topics = ("event-broker", "api-gateway", "iot", "etl", "municipal")
    package_type = "library"
    settings = "os", "arch", "compiler", "build_type"
    options = {
        "shared": [True, False],  # CIVICBUS_SHARED
        "fPIC": [True, False],  # CMAKE_POSITION_INDEPENDENT_CODE
    }
    default_options = {
        "shared": False,
        "fPIC": True,
    }
    exports_sources = ("CMakeLists.txt", "LICENSE", "cmake/*", "include/*", "src/*", "data/*")

    def set_version(self):
        # One source of truth: project(civicbus VERSION ...) in CMakeLists.txt.
        text = load(self, os.path.join(self.recipe_folder, "CMakeLists.txt"))
        self.version = re.search(r"project\(civicbus VERSION ([0-9]+\.[0-9]+\.[0-9]+)", text).group(1)

    def config_options(self):
        if self.settings.os == "Windows":
            del self.options.fPIC

    def configure(self):
        if self.options.shared:
            self.options.rm_safe("fPIC")

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        # Only fmt is part of the public interface (civicbus::civicbus links it PUBLIC); the
        # others are private to the library.
        self.requires("fmt/[>=9.1 <11]", transitive_headers=True)
        self.requires("asio/[>=1.22 <2]")
        self.requires("mbedtls/[>=2.28 <4]")
        self.requires("simdjson/[>=3.0 <4]")
        self.requires("sqlite3/[>=3.40 <4]")
        self.requires("yaml-cpp/[>=0.7 <0.9]")
        self.requires("expat/[>=2.5 <3]")
        self.requires("paho-mqtt-cpp/[>=1.2 <2]")
        self.requires("libpq/[>=15 <18]")
        self.requires("zlib/[>=1.2.13 <2]")
        self.requires("libssh2/[>=1.10 <2]")
        self.requires("llhttp/[>=8.1 <10]")

    def validate(self):
        check_min_cppstd(self, 20)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["CIVICBUS_SHARED"] = bool(self.options.shared)
        # The library and the CLI only: the test suites, benchmarks, examples and fuzzers need
        # servers and tools a package build does not have; the Python module is its own wheel.
        tc.cache_variables["CIVICBUS_BUILD_TESTS"] = False
        tc.cache_variables["CIVICBUS_BUILD_BENCHMARKS"] = False
        tc.cache_variables["CIVICBUS_BUILD_EXAMPLES"] = False
        tc.cache_variables["CIVICBUS_BUILD_FUZZERS"] = False
        tc.cache_variables["CIVICBUS_BUILD_PYTHON"] = False
        tc.cache_variables["CIVICBUS_SANITIZE"] = ""
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        cmake = CMake(self)
        cmake.install()
        # Conan's generators describe the package from package_info() below.
        rmdir(self, os.path.join(self.package_folder, "lib", "cmake"))
        rmdir(self, os.path.join(self.package_folder, "lib", "pkgconfig"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "civicbus")
        self.cpp_info.set_property("cmake_target_name", "civicbus::civicbus")
        self.cpp_info.set_property("pkg_config_name", "civicbus")
        self.cpp_info.libs = ["civicbus"]
        self.cpp_info.requires = [
            "fmt::fmt",
            "asio::asio",
            "mbedtls::mbedtls",
            "simdjson::simdjson",
            "sqlite3::sqlite3",
            "yaml-cpp::yaml-cpp",
            "expat::expat",
            "paho-mqtt-cpp::paho-mqtt-cpp",
            "libpq::libpq",
            "zlib::zlib",
            "libssh2::libssh2",
            "llhttp::llhttp",
        ]
        if self.settings.os in ("Linux", "FreeBSD"):
            self.cpp_info.system_libs = ["pthread", "m"]
