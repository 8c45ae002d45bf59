# Finds the dependencies. Asio, mbedTLS 2.x and libssh2 ship no CMake package on Debian, so
# they are found with the find modules beside this file (FindAsio.cmake, FindMbedTLS.cmake,
# FindLibssh2.cmake); the installed civicbusConfig.cmake ships and uses the same modules. Each
# module prefers a package manager's CMake package (Conan, vcpkg) when there is one.
#
# The link targets of the libraries civicbus uses are collected in CIVICBUS_LINK_DEPS (what a
# static libcivicbus needs at link time, exported as $<LINK_ONLY:...>) and every name that is
# not the same under every package manager is kept in a variable, so the root CMakeLists and
# the install rules name them once.
find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(simdjson REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(yaml-cpp REQUIRED)
# yaml-cpp 0.7 (Debian) names its target yaml-cpp; 0.8, Conan and vcpkg yaml-cpp::yaml-cpp.
if(TARGET yaml-cpp::yaml-cpp)
  set(CIVICBUS_YAML_CPP_TARGET yaml-cpp::yaml-cpp)
else()
  set(CIVICBUS_YAML_CPP_TARGET yaml-cpp)
endif()
# libexpat: the gateway's XML body transforms (src/gateway/transform.cpp).
find_package(EXPAT REQUIRED)
# CMake's FindEXPAT names EXPAT::EXPAT; expat's own package (preferred by Conan) expat::expat.
if(TARGET EXPAT::EXPAT)
  set(CIVICBUS_EXPAT_TARGET EXPAT::EXPAT)
else()
  set(CIVICBUS_EXPAT_TARGET expat::expat)
endif()
# Eclipse Paho MQTT C++ (and the C library under it): the device fleet's MQTT ingestion
# (src/fleet/mqtt_*.cpp).
find_package(PahoMqttCpp REQUIRED)
# A static-only Paho build (Conan's and vcpkg's static packages) names its target
# paho-mqttpp3-static.
if(TARGET PahoMqttCpp::paho-mqttpp3)
  set(CIVICBUS_PAHO_TARGET PahoMqttCpp::paho-mqttpp3)
else()
  set(CIVICBUS_PAHO_TARGET PahoMqttCpp::paho-mqttpp3-static)
endif()
# libpq: the PostgreSQL adapter of the storage port (src/storage/postgres.cpp).
find_package(PostgreSQL REQUIRED)

# zlib: inflating GTFS feeds delivered as .zip (src/connect/zip_reader.cpp).
find_package(ZLIB REQUIRED)
# libssh2: the sftp connector (src/connect/sftp_connector.cpp).
find_package(Libssh2 MODULE REQUIRED)
# Asio (header-only) and mbedTLS: cmake/FindAsio.cmake, cmake/FindMbedTLS.cmake.
find_package(Asio MODULE REQUIRED)
find_package(MbedTLS MODULE REQUIRED)

# What the areas compile against: Asio with the project's own settings on top. The recycling
# allocator keeps 64 freed blocks per kind and thread instead of 2: a proxied request holds
# about eight coroutine frames and operations at once (server and client side), and a worker
# starts and ends requests in batches (one epoll wake-up's worth), so with 2 slots, and still
# with 16, most frames went back to malloc: 64 measured 670 fewer instructions per proxied
# request than 16 (benchmarks/gateway_instructions.sh). Every translation unit that includes
# Asio must see the same value (it sizes a per-thread array), so it is set here, once.
add_library(civicbus_deps::asio INTERFACE IMPORTED)
set_target_properties(civicbus_deps::asio PROPERTIES
  INTERFACE_LINK_LIBRARIES Asio::Asio
  INTERFACE_COMPILE_DEFINITIONS
    "ASIO_STANDALONE;ASIO_NO_DEPRECATED;ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE=64")
# Asio 1.24 only looks for the Coroutines TS (<experimental/coroutine>) under clang; clang 14+
# with libstdc++ has C++20 coroutines, which the http area's server uses.
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 14)
  set_property(TARGET civicbus_deps::asio APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS
               ASIO_HAS_CO_AWAIT=1)
endif()

# llhttp (the HTTP/1.1 parser of Node.js). Debian's node-llhttp ships its generated C under
# /usr/share/llhttp and the header under /usr/share/include/llhttp; they are compiled here into
# civicbus_llhttp, a static library the http area links (and whose objects go into libcivicbus
# itself, see cmake/CivicbusInstall.cmake). Elsewhere the Conan/vcpkg package `llhttp` is used.
find_path(LLHTTP_INCLUDE_DIR llhttp.h PATHS /usr/share/include/llhttp NO_DEFAULT_PATH)
find_path(LLHTTP_SOURCE_DIR llhttp.c PATHS /usr/share/llhttp NO_DEFAULT_PATH)
if(LLHTTP_INCLUDE_DIR AND LLHTTP_SOURCE_DIR AND EXISTS ${LLHTTP_SOURCE_DIR}/api.c
   AND EXISTS ${LLHTTP_SOURCE_DIR}/http.c)
  add_library(civicbus_llhttp_objects OBJECT ${LLHTTP_SOURCE_DIR}/api.c ${LLHTTP_SOURCE_DIR}/http.c
              ${LLHTTP_SOURCE_DIR}/llhttp.c)
  target_include_directories(civicbus_llhttp_objects SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
  set_target_properties(civicbus_llhttp_objects PROPERTIES POSITION_INDEPENDENT_CODE ON)
  # Position-independent code lets GCC assume any global function may be interposed, so the
  # parser's many small helper functions are called through the PLT instead of inlined.
  if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
    target_compile_options(civicbus_llhttp_objects PRIVATE -fno-semantic-interposition)
  endif()
  # On x86-64 with GCC or Clang the parser is also compiled with SSE4.2 (llhttp's generated
  # code then scans header values and URLs 16 bytes at a time), and src/http/llhttp_dispatch.c
  # picks that build at run time when the CPU has the instructions. The second copy is
  # llhttp.c included from a generated file that renames each of its external functions.
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$"
     AND CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
    file(STRINGS ${LLHTTP_SOURCE_DIR}/llhttp.c _llhttp_defs
         REGEX "^int llhttp__internal[A-Za-z0-9_]*\\(")
    set(_llhttp_names)
    foreach(_def IN LISTS _llhttp_defs)
      string(REGEX REPLACE "^int (llhttp__internal[A-Za-z0-9_]*)\\(.*" "\\1" _name "${_def}")
      list(APPEND _llhttp_names ${_name})
    endforeach()
    list(REMOVE_DUPLICATES _llhttp_names)
    set(_wrapper "/* Generated by cmake/CivicbusDependencies.cmake: llhttp.c built with SSE4.2 */\n")
    foreach(_name IN LISTS _llhttp_names)
      string(REPLACE "llhttp__internal" "civicbus_llhttp_sse42_" _renamed ${_name})
      string(APPEND _wrapper "#define ${_name} ${_renamed}\n")
    endforeach()
    string(APPEND _wrapper "#include \"${LLHTTP_SOURCE_DIR}/llhttp.c\"\n")
    file(CONFIGURE OUTPUT ${CMAKE_BINARY_DIR}/generated/llhttp_sse42.c CONTENT "${_wrapper}")
    target_sources(civicbus_llhttp_objects PRIVATE ${CMAKE_BINARY_DIR}/generated/llhttp_sse42.c
                   ${PROJECT_SOURCE_DIR}/src/http/llhttp_dispatch.c)
    set_source_files_properties(${CMAKE_BINARY_DIR}/generated/llhttp_sse42.c PROPERTIES
                                COMPILE_OPTIONS "-msse4.2")
    set_source_files_properties(${LLHTTP_SOURCE_DIR}/llhttp.c PROPERTIES COMPILE_DEFINITIONS
                                "llhttp__internal_execute=civicbus_llhttp_execute_baseline")
    set(CIVICBUS_LLHTTP_TWO_BUILDS ON)  # tests/http compares the two builds
  endif()
  add_library(civicbus_llhttp STATIC $<TARGET_OBJECTS:civicbus_llhttp_objects>)
  target_include_directories(civicbus_llhttp SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
  add_library(civicbus_deps::llhttp ALIAS civicbus_llhttp)
else()
  find_package(llhttp CONFIG QUIET)
  if(TARGET llhttp::llhttp_static)
    set(CIVICBUS_LLHTTP_TARGET llhttp::llhttp_static)
  elseif(TARGET llhttp::llhttp)
    set(CIVICBUS_LLHTTP_TARGET llhttp::llhttp)
  endif()
  if(CIVICBUS_LLHTTP_TARGET)
    add_library(civicbus_deps::llhttp INTERFACE IMPORTED)
    set_target_properties(civicbus_deps::llhttp PROPERTIES
      INTERFACE_LINK_LIBRARIES ${CIVICBUS_LLHTTP_TARGET})
  else()
    message(FATAL_ERROR "llhttp not found: install the Debian package node-llhttp "
                        "(/usr/share/llhttp/*.c, /usr/share/include/llhttp/llhttp.h) or the "
                        "Conan/vcpkg package llhttp")
  endif()
endif()

# What a static libcivicbus links (its private dependencies, in link order). Asio is
# header-only but stays in the list: it is a dependency of the library, and the installed
# config finds every dependency the same way. llhttp built here is folded into libcivicbus;
# a packaged llhttp is linked.
set(CIVICBUS_LINK_DEPS Asio::Asio MbedTLS::mbedtls simdjson::simdjson SQLite::SQLite3
    PostgreSQL::PostgreSQL ${CIVICBUS_YAML_CPP_TARGET} ${CIVICBUS_EXPAT_TARGET}
    ${CIVICBUS_PAHO_TARGET} ZLIB::ZLIB Libssh2::libssh2 ${CIVICBUS_LLHTTP_TARGET})
