#include "builtin_connectors.hpp"

namespace civicbus::connect {

ConnectorCatalog ConnectorCatalog::builtin() {
  ConnectorCatalog catalog;
  // A built-in connector that cannot register is a bug caught by the catalog's tests; the
  // catalog still offers the others.
  // (each family adds one line here: detail::add_<family>_connectors(catalog).ignore_error();)
  detail::add_sql_connectors(catalog).ignore_error();
  detail::add_file_connectors(catalog).ignore_error();
  detail::add_municipal_connectors(catalog).ignore_error();
  detail::add_http_connectors(catalog).ignore_error();
  detail::add_database_connectors(catalog).ignore_error();
  detail::add_messaging_connectors(catalog).ignore_error();
  detail::add_object_storage_connectors(catalog).ignore_error();
  return catalog;
}

}  // namespace civicbus::connect
