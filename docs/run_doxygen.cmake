# Runs Doxygen over the public headers for the ctest entry "docs: doxygen builds the API
# reference": fails when Doxygen fails, prints an error, or leaves no index.html.
#   cmake -DDOXYGEN=... -DDOXYFILE=... -DSOURCE_DIR=... -DOUTPUT_DIR=... -P run_doxygen.cmake
foreach(var DOXYGEN DOXYFILE SOURCE_DIR OUTPUT_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_doxygen.cmake needs -D${var}=...")
  endif()
endforeach()
file(REMOVE_RECURSE "${OUTPUT_DIR}/html")
execute_process(COMMAND "${DOXYGEN}" "${DOXYFILE}"
                WORKING_DIRECTORY "${SOURCE_DIR}"
                RESULT_VARIABLE result
                OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "doxygen failed (exit ${result}):\n${out}${err}")
endif()
string(REGEX MATCHALL "[^\n]*error:[^\n]*" errors "${out}${err}")
if(errors)
  string(REPLACE ";" "\n" errors "${errors}")
  message(FATAL_ERROR "doxygen reported errors:\n${errors}")
endif()
if(NOT EXISTS "${OUTPUT_DIR}/html/index.html")
  message(FATAL_ERROR "doxygen wrote no ${OUTPUT_DIR}/html/index.html")
endif()
string(REGEX MATCHALL "[^\n]*warning:[^\n]*" warnings "${out}${err}")
list(LENGTH warnings warning_count)
file(GLOB pages "${OUTPUT_DIR}/html/*.html")
list(LENGTH pages page_count)
message(STATUS "API reference: ${OUTPUT_DIR}/html/index.html (${page_count} pages, ${warning_count} warnings)")
