// The draft 2020-12 meta-schemas that JsonSchema knows without a resolver.
#pragma once

#include <string_view>
#include <utility>

namespace civicbus::detail {

// The JSON text of the meta-schema with this URI (a trailing '#' is ignored), or empty if it
// is not one of the draft 2020-12 dialect or vocabulary meta-schemas.
std::string_view builtin_metaschema_text(std::string_view uri);

}  // namespace civicbus::detail
