# Install rules and package files (docs/packaging.md): the public and generated headers,
# libcivicbus, the civicbus CLI, the exported target civicbus::civicbus with
# civicbusConfig.cmake and civicbusConfigVersion.cmake (and the find modules the config
# needs), and civicbus.pc for pkg-config. Included once from the root CMakeLists.txt, after
# the civicbus and civicbus_cli targets exist.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(CIVICBUS_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/civicbus CACHE STRING
    "Where civicbusConfig.cmake is installed (relative to the prefix)")
set(CIVICBUS_INSTALL_PKGCONFIGDIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig CACHE STRING
    "Where civicbus.pc is installed (relative to the prefix)")

# Before 1.0 a minor release may break the ABI (semantic versioning), so the soname carries the
# minor version too: libcivicbus.so.0.1.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(civicbus_soversion ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
else()
  set(civicbus_soversion ${PROJECT_VERSION_MAJOR})
endif()
set_target_properties(civicbus PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${civicbus_soversion}
                      EXPORT_NAME civicbus)

install(TARGETS civicbus EXPORT civicbusTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS civicbus_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/civicbus
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.hpp")
install(FILES ${CIVICBUS_GENERATED_INCLUDE_DIR}/civicbus/version.hpp
              ${CIVICBUS_GENERATED_INCLUDE_DIR}/civicbus/export.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/civicbus)

# CMake package. A static libcivicbus exports its private dependencies as $<LINK_ONLY:...>, so
# the config finds each of them (with the same find modules as the build) before it loads the
# targets; a shared one needs only its public dependencies.
if(CIVICBUS_SHARED)
  set(CIVICBUS_CONFIG_STATIC OFF)
else()
  set(CIVICBUS_CONFIG_STATIC ON)
endif()
if(CIVICBUS_LLHTTP_TARGET)
  set(CIVICBUS_CONFIG_LLHTTP ON)  # a packaged llhttp is linked, not folded in
else()
  set(CIVICBUS_CONFIG_LLHTTP OFF)
endif()
install(EXPORT civicbusTargets NAMESPACE civicbus:: DESTINATION ${CIVICBUS_INSTALL_CMAKEDIR}
        FILE civicbusTargets.cmake)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/civicbusConfig.cmake.in
  ${PROJECT_BINARY_DIR}/civicbusConfig.cmake INSTALL_DESTINATION ${CIVICBUS_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/civicbusConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/civicbusConfig.cmake
              ${PROJECT_BINARY_DIR}/civicbusConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindAsio.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindMbedTLS.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindLibssh2.cmake
        DESTINATION ${CIVICBUS_INSTALL_CMAKEDIR})

# pkg-config. The prefix is found from the .pc file's own place (${pcfiledir}), so the file
# stays right after `cmake --install --prefix <elsewhere>` and when the tree is moved. A static
# library lists its dependencies in Requires.private (those with a .pc file here) and
# Libs.private (the others): `pkg-config --static --libs civicbus` links them.
file(RELATIVE_PATH CIVICBUS_PC_PREFIX_FROM_PCFILEDIR
     /prefix/${CIVICBUS_INSTALL_PKGCONFIGDIR} /prefix)
string(REGEX REPLACE "/$" "" CIVICBUS_PC_PREFIX_FROM_PCFILEDIR "${CIVICBUS_PC_PREFIX_FROM_PCFILEDIR}")
set(CIVICBUS_PC_LIBS "-pthread")
if(CIVICBUS_SANITIZE)
  string(APPEND CIVICBUS_PC_LIBS " -fsanitize=${CIVICBUS_SANITIZE}")
endif()
set(CIVICBUS_PC_REQUIRES_PRIVATE "")
set(CIVICBUS_PC_LIBS_PRIVATE "")
if(NOT CIVICBUS_SHARED)
  # <pkg-config module>|<flags when it has no .pc file>, in link order.
  set(civicbus_pc_deps
    "mbedtls|-lmbedtls -lmbedx509 -lmbedcrypto"
    "simdjson|-lsimdjson"
    "sqlite3|-lsqlite3"
    "libpq|-lpq"
    "yaml-cpp|-lyaml-cpp"
    "expat|-lexpat"
    "paho-mqttpp3|-lpaho-mqttpp3 -lpaho-mqtt3as"
    "zlib|-lz"
    "libssh2|-lssh2")
  if(CIVICBUS_LLHTTP_TARGET)
    list(APPEND civicbus_pc_deps "libllhttp|-lllhttp")
  endif()
  find_package(PkgConfig QUIET)
  foreach(dep IN LISTS civicbus_pc_deps)
    string(REPLACE "|" ";" dep "${dep}")
    list(GET dep 0 module)
    list(GET dep 1 flags)
    string(MAKE_C_IDENTIFIER "civicbus_pc_${module}" var)
    if(PKG_CONFIG_FOUND)
      pkg_check_modules(${var} QUIET ${module})
    endif()
    # `pkg-config --static` also expands the module's own Libs.private, which name its static
    # build's dependencies; Debian's libpq.pc lists -lpgcommon -lpgport, which are not
    # installed. Such a module is linked by its plain (shared) -l flags instead.
    set(usable ${${var}_FOUND})
    if(usable)
      foreach(lib IN LISTS ${var}_STATIC_LIBRARIES)
        string(MAKE_C_IDENTIFIER "CIVICBUS_PC_PROBE_${lib}" probe)
        find_library(${probe} NAMES ${lib} HINTS ${${var}_STATIC_LIBRARY_DIRS})
        mark_as_advanced(${probe})
        if(NOT ${probe})
          set(usable FALSE)
        endif()
      endforeach()
    endif()
    if(usable)
      string(APPEND CIVICBUS_PC_REQUIRES_PRIVATE " ${module}")
    elseif(${var}_FOUND)
      list(TRANSFORM ${var}_LIBRARIES PREPEND "-l" OUTPUT_VARIABLE plain)
      list(JOIN plain " " plain)
      string(APPEND CIVICBUS_PC_LIBS_PRIVATE " ${plain}")
    else()
      string(APPEND CIVICBUS_PC_LIBS_PRIVATE " ${flags}")
    endif()
  endforeach()
  string(STRIP "${CIVICBUS_PC_REQUIRES_PRIVATE}" CIVICBUS_PC_REQUIRES_PRIVATE)
  string(STRIP "${CIVICBUS_PC_LIBS_PRIVATE}" CIVICBUS_PC_LIBS_PRIVATE)
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/civicbus.pc.in ${PROJECT_BINARY_DIR}/civicbus.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/civicbus.pc DESTINATION ${CIVICBUS_INSTALL_PKGCONFIGDIR})
