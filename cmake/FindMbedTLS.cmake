# FindMbedTLS: the mbedTLS libraries (mbedtls, mbedx509, mbedcrypto).
#
# mbedTLS 2.x (Debian's libmbedtls-dev) installs no CMake package, so the header and the three
# libraries are looked up here; where an MbedTLS package exists (mbedTLS 3's own, Conan's and
# vcpkg's all name their targets MbedTLS::mbedtls, MbedTLS::mbedx509, MbedTLS::mbedcrypto), it is
# used instead. civicbus's own CMakeLists and its installed civicbusConfig.cmake both find
# mbedTLS with this module.
#
# Result: the imported targets MbedTLS::mbedtls (links mbedx509), MbedTLS::mbedx509 (links
# mbedcrypto) and MbedTLS::mbedcrypto, and the variables MbedTLS_FOUND, MbedTLS_VERSION and,
# when looked up here, MbedTLS_INCLUDE_DIR and MbedTLS_<lib>_LIBRARY.
include(FindPackageHandleStandardArgs)

if(NOT TARGET MbedTLS::mbedtls)
  find_package(MbedTLS CONFIG QUIET)
endif()
if(TARGET MbedTLS::mbedtls)
  set(MbedTLS_PACKAGE_TARGET MbedTLS::mbedtls)
  find_package_handle_standard_args(MbedTLS REQUIRED_VARS MbedTLS_PACKAGE_TARGET
                                    VERSION_VAR MbedTLS_VERSION)
  return()
endif()

find_path(MbedTLS_INCLUDE_DIR mbedtls/ssl.h)
find_library(MbedTLS_mbedtls_LIBRARY mbedtls)
find_library(MbedTLS_mbedx509_LIBRARY mbedx509)
find_library(MbedTLS_mbedcrypto_LIBRARY mbedcrypto)
mark_as_advanced(MbedTLS_INCLUDE_DIR MbedTLS_mbedtls_LIBRARY MbedTLS_mbedx509_LIBRARY
                 MbedTLS_mbedcrypto_LIBRARY)
# 2.x defines the version in version.h, 3.x in build_info.h.
foreach(_mbedtls_header version.h build_info.h)
  if(MbedTLS_INCLUDE_DIR AND EXISTS "${MbedTLS_INCLUDE_DIR}/mbedtls/${_mbedtls_header}")
    file(STRINGS "${MbedTLS_INCLUDE_DIR}/mbedtls/${_mbedtls_header}" _mbedtls_version_line
         REGEX "^#define[ \t]+MBEDTLS_VERSION_STRING[ \t]+\"[0-9.]+\"")
    if(_mbedtls_version_line)
      string(REGEX REPLACE ".*\"([0-9.]+)\".*" "\\1" MbedTLS_VERSION "${_mbedtls_version_line}")
      break()
    endif()
  endif()
endforeach()
find_package_handle_standard_args(MbedTLS
  REQUIRED_VARS MbedTLS_mbedtls_LIBRARY MbedTLS_mbedx509_LIBRARY MbedTLS_mbedcrypto_LIBRARY
                MbedTLS_INCLUDE_DIR
  VERSION_VAR MbedTLS_VERSION)

if(MbedTLS_FOUND)
  set(_mbedtls_links_to_mbedcrypto "")
  set(_mbedtls_links_to_mbedx509 MbedTLS::mbedcrypto)
  set(_mbedtls_links_to_mbedtls MbedTLS::mbedx509)
  foreach(_mbedtls_lib mbedcrypto mbedx509 mbedtls)
    if(NOT TARGET MbedTLS::${_mbedtls_lib})
      add_library(MbedTLS::${_mbedtls_lib} UNKNOWN IMPORTED)
      set_target_properties(MbedTLS::${_mbedtls_lib} PROPERTIES
        IMPORTED_LOCATION "${MbedTLS_${_mbedtls_lib}_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${MbedTLS_INCLUDE_DIR}"
        INTERFACE_LINK_LIBRARIES "${_mbedtls_links_to_${_mbedtls_lib}}")
    endif()
  endforeach()
endif()
