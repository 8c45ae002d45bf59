/* llhttp's parser compiled twice (cmake/CivicbusDependencies.cmake): for the baseline x86-64
 * and with SSE4.2, where its generated code scans header values and URLs 16 bytes at a time.
 * llhttp's api.c calls llhttp__internal_execute(); this is it, taking the SSE4.2 build on a
 * CPU that has the instructions (every x86-64 CPU since 2008) and the baseline one elsewhere. */
#include "llhttp.h"

int civicbus_llhttp_execute_baseline(llhttp__internal_t* state, const char* p, const char* endp);
int civicbus_llhttp_sse42__execute(llhttp__internal_t* state, const char* p, const char* endp);

int llhttp__internal_execute(llhttp__internal_t* state, const char* p, const char* endp) {
  if (__builtin_cpu_supports("sse4.2")) {
    return civicbus_llhttp_sse42__execute(state, p, endp);
  }
  return civicbus_llhttp_execute_baseline(state, p, endp);
}
