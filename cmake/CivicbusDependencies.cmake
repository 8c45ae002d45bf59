# Finds the Debian-packaged dependencies. Asio and mbedTLS 2.x ship no CMake config, so they
# are wrapped in imported targets here (civicbus_deps::asio, civicbus_deps::mbedtls).
find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(simdjson REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(yaml-cpp REQUIRED)
# libexpat: the gateway's XML body transforms (src/gateway/transform.cpp).
find_package(EXPAT REQUIRED)
# Eclipse Paho MQTT C++ (and the C library under it): the device fleet's MQTT ingestion
# (src/fleet/mqtt_*.cpp).
find_package(PahoMqttCpp REQUIRED)
# libpq: the PostgreSQL adapter of the storage port (src/storage/postgres.cpp).
find_package(PostgreSQL REQUIRED)

# zlib: inflating GTFS feeds delivered as .zip (src/connect/zip_reader.cpp).
find_package(ZLIB REQUIRED)
# libssh2: the sftp connector (src/connect/sftp_connector.cpp); Debian ships no CMake config.
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBSSH2 REQUIRED IMPORTED_TARGET libssh2)

find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)
add_library(civicbus_deps::asio INTERFACE IMPORTED)
set_target_properties(civicbus_deps::asio PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES ${ASIO_INCLUDE_DIR}
  INTERFACE_COMPILE_DEFINITIONS "ASIO_STANDALONE;ASIO_NO_DEPRECATED")
# Asio 1.24 only looks for the Coroutines TS (<experimental/coroutine>) under clang; clang 14+
# with libstdc++ has C++20 coroutines, which the http area's server uses.
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 14)
  set_property(TARGET civicbus_deps::asio APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS
               ASIO_HAS_CO_AWAIT=1)
endif()

find_path(MBEDTLS_INCLUDE_DIR mbedtls/ssl.h REQUIRED)
find_library(MBEDTLS_LIBRARY mbedtls REQUIRED)
find_library(MBEDX509_LIBRARY mbedx509 REQUIRED)
find_library(MBEDCRYPTO_LIBRARY mbedcrypto REQUIRED)
add_library(civicbus_deps::mbedtls INTERFACE IMPORTED)
set_target_properties(civicbus_deps::mbedtls PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES ${MBEDTLS_INCLUDE_DIR}
  INTERFACE_LINK_LIBRARIES "${MBEDTLS_LIBRARY};${MBEDX509_LIBRARY};${MBEDCRYPTO_LIBRARY}")

# llhttp (the HTTP/1.1 parser of Node.js). Debian's node-llhttp ships its generated C under
# /usr/share/llhttp and the header under /usr/share/include/llhttp; they are compiled here into
# civicbus_llhttp, a static library the http area links. Elsewhere the Conan/vcpkg
# package `llhttp` is used.
find_path(LLHTTP_INCLUDE_DIR llhttp.h PATHS /usr/share/include/llhttp NO_DEFAULT_PATH)
find_path(LLHTTP_SOURCE_DIR llhttp.c PATHS /usr/share/llhttp NO_DEFAULT_PATH)
if(LLHTTP_INCLUDE_DIR AND LLHTTP_SOURCE_DIR AND EXISTS ${LLHTTP_SOURCE_DIR}/api.c
   AND EXISTS ${LLHTTP_SOURCE_DIR}/http.c)
  add_library(civicbus_llhttp STATIC ${LLHTTP_SOURCE_DIR}/api.c ${LLHTTP_SOURCE_DIR}/http.c
              ${LLHTTP_SOURCE_DIR}/llhttp.c)
  target_include_directories(civicbus_llhttp SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
  set_target_properties(civicbus_llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON)
  add_library(civicbus_deps::llhttp ALIAS civicbus_llhttp)
else()
  find_package(llhttp CONFIG QUIET)
  if(TARGET llhttp::llhttp_static)
    add_library(civicbus_deps::llhttp INTERFACE IMPORTED)
    set_target_properties(civicbus_deps::llhttp PROPERTIES INTERFACE_LINK_LIBRARIES llhttp::llhttp_static)
  elseif(TARGET llhttp::llhttp)
    add_library(civicbus_deps::llhttp INTERFACE IMPORTED)
    set_target_properties(civicbus_deps::llhttp PROPERTIES INTERFACE_LINK_LIBRARIES llhttp::llhttp)
  else()
    message(FATAL_ERROR "llhttp not found: install the Debian package node-llhttp "
                        "(/usr/share/llhttp/*.c, /usr/share/include/llhttp/llhttp.h) or the "
                        "Conan/vcpkg package llhttp")
  endif()
endif()
