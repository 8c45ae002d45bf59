# FindAsio: standalone (non-Boost) Asio, header-only.
#
# Debian's libasio-dev ships no CMake package, so the header is looked up here; where a package
# manager provides one (Conan and vcpkg both name their target asio::asio), that package is used
# instead. civicbus's own CMakeLists and its installed civicbusConfig.cmake both find Asio with
# this module, so there is one way to find it.
#
# Result: the imported target Asio::Asio (include directory, ASIO_STANDALONE, threads) and the
# variables Asio_FOUND, Asio_VERSION and, when the header was looked up here, Asio_INCLUDE_DIR.
include(FindPackageHandleStandardArgs)

if(NOT TARGET asio::asio)
  find_package(asio CONFIG QUIET)
endif()
if(TARGET asio::asio)
  set(Asio_PACKAGE_TARGET asio::asio)
  set(Asio_VERSION "${asio_VERSION}")
  find_package_handle_standard_args(Asio REQUIRED_VARS Asio_PACKAGE_TARGET VERSION_VAR Asio_VERSION)
else()
  find_path(Asio_INCLUDE_DIR asio.hpp)
  mark_as_advanced(Asio_INCLUDE_DIR)
  if(Asio_INCLUDE_DIR AND EXISTS "${Asio_INCLUDE_DIR}/asio/version.hpp")
    # ASIO_VERSION is XXYYZZ: 102400 is 1.24.0.
    file(STRINGS "${Asio_INCLUDE_DIR}/asio/version.hpp" _asio_version_line
         REGEX "^#define ASIO_VERSION [0-9]+")
    string(REGEX REPLACE "^#define ASIO_VERSION ([0-9]+).*" "\\1" _asio_version "${_asio_version_line}")
    math(EXPR _asio_major "${_asio_version} / 100000")
    math(EXPR _asio_minor "${_asio_version} / 100 % 1000")
    math(EXPR _asio_patch "${_asio_version} % 100")
    set(Asio_VERSION "${_asio_major}.${_asio_minor}.${_asio_patch}")
  endif()
  find_package_handle_standard_args(Asio REQUIRED_VARS Asio_INCLUDE_DIR VERSION_VAR Asio_VERSION)
endif()

if(Asio_FOUND AND NOT TARGET Asio::Asio)
  add_library(Asio::Asio INTERFACE IMPORTED)
  if(Asio_PACKAGE_TARGET)
    set_target_properties(Asio::Asio PROPERTIES INTERFACE_LINK_LIBRARIES ${Asio_PACKAGE_TARGET})
  else()
    find_package(Threads QUIET)
    set_target_properties(Asio::Asio PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${Asio_INCLUDE_DIR}"
      INTERFACE_COMPILE_DEFINITIONS ASIO_STANDALONE)
    if(TARGET Threads::Threads)
      set_target_properties(Asio::Asio PROPERTIES INTERFACE_LINK_LIBRARIES Threads::Threads)
    endif()
  endif()
endif()
