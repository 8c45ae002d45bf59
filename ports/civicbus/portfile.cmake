# vcpkg overlay port for civicbus (docs/packaging.md). It builds the checkout it sits in, so
# no download and no hash:
#   vcpkg install civicbus --overlay-ports=<checkout>/ports
# Set CIVICBUS_SOURCE_DIR in the environment to build another checkout (add it to
# VCPKG_KEEP_ENV_VARS). A port for a registry would use vcpkg_from_git with a release tag.
if(DEFINED ENV{CIVICBUS_SOURCE_DIR})
  set(SOURCE_PATH "$ENV{CIVICBUS_SOURCE_DIR}")
else()
  get_filename_component(SOURCE_PATH "${CURRENT_PORT_DIR}/../.." ABSOLUTE)
endif()
if(NOT EXISTS "${SOURCE_PATH}/CMakeLists.txt")
  message(FATAL_ERROR "civicbus sources not found at ${SOURCE_PATH}; set CIVICBUS_SOURCE_DIR")
endif()

string(COMPARE EQUAL "${VCPKG_LIBRARY_LINKAGE}" "dynamic" CIVICBUS_SHARED)

# The library and the CLI only: the test suites, benchmarks, examples and fuzzers need servers
# and tools a port build does not have; the Python module is its own wheel.
vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -DCIVICBUS_SHARED=${CIVICBUS_SHARED}
    -DCIVICBUS_BUILD_TESTS=OFF
    -DCIVICBUS_BUILD_BENCHMARKS=OFF
    -DCIVICBUS_BUILD_EXAMPLES=OFF
    -DCIVICBUS_BUILD_FUZZERS=OFF
    -DCIVICBUS_BUILD_PYTHON=OFF
    -DCIVICBUS_SANITIZE=
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH lib/cmake/civicbus)
vcpkg_fixup_pkgconfig()
vcpkg_copy_tools(TOOL_NAMES civicbus AUTO_CLEAN)

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug/include" "${CURRENT_PACKAGES_DIR}/debug/share")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
