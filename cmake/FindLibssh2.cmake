# FindLibssh2: libssh2, the SSH/SFTP client library of the sftp connector.
#
# Debian's libssh2-1-dev ships a pkg-config file but no CMake package, so the library is looked
# up here (pkg-config's paths as hints); where a Libssh2 package exists (Conan names its target
# Libssh2::libssh2, vcpkg libssh2::libssh2), it is used instead. civicbus's own CMakeLists and
# its installed civicbusConfig.cmake both find libssh2 with this module.
#
# Result: the imported target Libssh2::libssh2 and the variables Libssh2_FOUND, Libssh2_VERSION
# and, when looked up here, Libssh2_INCLUDE_DIR and Libssh2_LIBRARY.
include(FindPackageHandleStandardArgs)

if(NOT TARGET Libssh2::libssh2 AND NOT TARGET libssh2::libssh2)
  find_package(Libssh2 CONFIG QUIET)
endif()
foreach(_libssh2_target Libssh2::libssh2 libssh2::libssh2)
  if(TARGET ${_libssh2_target})
    set(Libssh2_PACKAGE_TARGET ${_libssh2_target})
    break()
  endif()
endforeach()

if(Libssh2_PACKAGE_TARGET)
  find_package_handle_standard_args(Libssh2 REQUIRED_VARS Libssh2_PACKAGE_TARGET
                                    VERSION_VAR Libssh2_VERSION)
else()
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(PC_Libssh2 QUIET libssh2)
  endif()
  find_path(Libssh2_INCLUDE_DIR libssh2.h HINTS ${PC_Libssh2_INCLUDE_DIRS})
  find_library(Libssh2_LIBRARY NAMES ssh2 libssh2 HINTS ${PC_Libssh2_LIBRARY_DIRS})
  mark_as_advanced(Libssh2_INCLUDE_DIR Libssh2_LIBRARY)
  if(Libssh2_INCLUDE_DIR AND EXISTS "${Libssh2_INCLUDE_DIR}/libssh2.h")
    file(STRINGS "${Libssh2_INCLUDE_DIR}/libssh2.h" _libssh2_version_line
         REGEX "^#define[ \t]+LIBSSH2_VERSION[ \t]+\"[0-9.]+")
    string(REGEX REPLACE ".*\"([0-9.]+).*" "\\1" Libssh2_VERSION "${_libssh2_version_line}")
  endif()
  find_package_handle_standard_args(Libssh2 REQUIRED_VARS Libssh2_LIBRARY Libssh2_INCLUDE_DIR
                                    VERSION_VAR Libssh2_VERSION)
endif()

if(Libssh2_FOUND AND NOT TARGET Libssh2::libssh2)
  if(Libssh2_PACKAGE_TARGET)
    add_library(Libssh2::libssh2 INTERFACE IMPORTED)
    set_target_properties(Libssh2::libssh2 PROPERTIES
      INTERFACE_LINK_LIBRARIES ${Libssh2_PACKAGE_TARGET})
  else()
    add_library(Libssh2::libssh2 UNKNOWN IMPORTED)
    set_target_properties(Libssh2::libssh2 PROPERTIES
      IMPORTED_LOCATION "${Libssh2_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${Libssh2_INCLUDE_DIR}")
  endif()
endif()
